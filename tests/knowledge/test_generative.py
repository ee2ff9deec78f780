"""RetriKT's generative source end to end, on a tiny GPT-2 first trained on a toy sentiment language.

The toy LM is trained (full fine-tune, ~10 s on one core) on packed rows of 1-3 examples of two
forms: ``"<source> positive: <text><eos>"`` (it writes label-conditioned text) and
``"<text> => positive<eos>"`` (it classifies, through the verbalizer). The source tag says how
often a labelled text is off-label: never after ``critic``, 30% of the time with no tag, 80% after
``forum``. A soft prompt that acts like ``critic`` earns more reward: that is what PPO must find.
Packing puts examples at every position, as a real LM sees text, so a prompt in front is in
distribution.
"""

from __future__ import annotations

import random

import pytest
import torch

from kdforge.errors import DataError, KdforgeError, ModelError
from kdforge.knowledge import (
    GenerativeSettings,
    Rollout,
    clipped_surrogate,
    cut_sample,
    extract_knowledge,
    generate_samples,
    label_token_ids,
    lm_label_probs,
    prompt_embedding,
    prompt_loss,
    sequence_logprobs,
    teacher_probs,
    tune_prompt,
    whiten,
)

POSITIVE = ["great", "wonderful", "brilliant", "lovely", "superb", "delightful", "fun", "moving"]
NEGATIVE = ["awful", "terrible", "boring", "dull", "bad", "poor", "weak", "painful"]
NEUTRAL = ["long", "short", "new", "old", "french", "quiet", "slow", "late"]
NOUNS = ["film", "movie", "story", "plot", "cast", "script", "ending", "music"]
TEMPLATES = ["the {n} was {a}", "a {a} {n}", "the {n} was {a} and {b}", "what a {a} {n}", "i found the {n} {a}"]
LABELS = ["negative", "positive"]
#: How often a labelled text is off-label (neutral or the other sentiment), by source tag.
OFF_LABEL = {"critic": 0.0, "": 0.3, "forum": 0.8}


def toy_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = set(POSITIVE + NEGATIVE + NEUTRAL + NOUNS + LABELS + [":", "=>"] + [tag for tag in OFF_LABEL if tag])
    words |= {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def sentence(rng: random.Random, adjectives: list[str]) -> str:
    a, b = rng.sample(adjectives, 2)
    return rng.choice(TEMPLATES).format(a=a, b=b, n=rng.choice(NOUNS))


def labelled(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(n)]
    return [sentence(rng, POSITIVE if y else NEGATIVE) for y in labels], labels


def example(rng: random.Random) -> str:
    y = rng.randint(0, 1)
    on_label, off_label = (POSITIVE, NEGATIVE) if y else (NEGATIVE, POSITIVE)
    if rng.random() < 0.5:  # generation form; how often the text is off-label depends on the source tag
        source = rng.choice(list(OFF_LABEL))
        if rng.random() < OFF_LABEL[source]:
            text = sentence(rng, NEUTRAL if rng.random() < 0.5 else off_label)
        else:
            text = sentence(rng, on_label)
        return f"{source} {LABELS[y]}: {text}<eos>" if source else f"{LABELS[y]}: {text}<eos>"
    if rng.random() < 0.2:  # classification form; neutral text has no label to learn
        return f"{sentence(rng, NEUTRAL)} => {LABELS[rng.randint(0, 1)]}<eos>"
    return f"{sentence(rng, on_label)} => {LABELS[y]}<eos>"


def train_toy_lm(steps: int = 600, batch: int = 32, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = toy_tokenizer()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    lm = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    lm.train()
    for _ in range(steps):
        rows = ["".join(example(rng) for _ in range(rng.randint(1, 3))) for _ in range(batch)]
        encoded = tokenizer(rows, padding=True, return_tensors="pt")
        targets = encoded.input_ids.masked_fill(encoded.attention_mask == 0, -100)
        loss = lm(**encoded, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lm.eval(), tokenizer


@pytest.fixture(scope="module")
def toy_lm():
    torch.set_num_threads(1)
    return train_toy_lm()


@pytest.fixture(scope="module")
def train_set():
    return labelled(16, seed=7)


def weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# RetriKT step 2 on the toy: a short step 1 (one epoch at a low rate) leaves the reward room to grow.
SETTINGS = GenerativeSettings(
    num_virtual_tokens=4,
    sft_epochs=1,
    sft_lr=1e-2,
    ppo_steps=40,
    rollouts_per_step=32,
    ppo_lr=3e-2,
    kl_beta=0.01,
    per_label=32,
    eval_per_label=64,
    max_new_tokens=16,
    seed=0,
)


@pytest.fixture(scope="module")
def extracted(toy_lm, train_set):
    lm, tokenizer = toy_lm
    before = weights(lm)
    samples = extract_knowledge(lm, tokenizer, *train_set, LABELS, SETTINGS)
    return samples, before, weights(lm)


def test_verbalizer_classifies_held_out_sentences(toy_lm):
    lm, tokenizer = toy_lm
    texts, labels = labelled(64, seed=99)
    probs = lm_label_probs(lm, tokenizer, texts, LABELS, batch_size=16)
    assert probs.shape == (64, 2)
    assert torch.allclose(probs.sum(-1), torch.ones(64))
    accuracy = (probs.argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert accuracy > 0.8
    tokenizer.padding_side = "left"
    try:
        left = lm_label_probs(lm, tokenizer, texts, LABELS, batch_size=16)
    finally:
        tokenizer.padding_side = "right"
    assert torch.allclose(left, probs, atol=1e-5)


def test_label_words_the_tokenizer_cannot_verbalize_are_refused(toy_lm):
    _, tokenizer = toy_lm
    with pytest.raises(ModelError, match="label word '' tokenizes to nothing"):
        label_token_ids(tokenizer, ["", "positive"])
    with pytest.raises(ModelError, match="'zebra' is not in the teacher's vocabulary"):
        label_token_ids(tokenizer, ["zebra", "positive"])
    with pytest.raises(ModelError, match="start with the same token"):
        label_token_ids(tokenizer, ["positive", "positive"])


def test_a_teacher_that_is_not_a_causal_lm_is_refused(toy_lm, train_set):
    from transformers import BertConfig, BertForSequenceClassification

    _, tokenizer = toy_lm
    encoder = BertForSequenceClassification(
        BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(ModelError, match="BertForSequenceClassification is not a causal language model"):
        extract_knowledge(encoder, tokenizer, *train_set, LABELS)
    with pytest.raises(KdforgeError, match="not a causal language model"):
        lm_label_probs(torch.nn.Linear(2, 2), tokenizer, ["a film"], LABELS)


def test_bad_inputs_fail_before_any_training(toy_lm, train_set):
    lm, tokenizer = toy_lm
    with pytest.raises(ModelError, match="label word ' ' tokenizes to nothing"):
        extract_knowledge(lm, tokenizer, *train_set, ["negative", " "])
    with pytest.raises(DataError, match="16 texts and 3 labels"):
        extract_knowledge(lm, tokenizer, train_set[0], [0, 1, 0], LABELS)


def test_prompt_tuning_trains_only_the_prompt_and_lowers_the_loss(toy_lm, train_set):
    lm, tokenizer = toy_lm
    before = weights(lm)
    untrained = tune_prompt(lm, tokenizer, *train_set, LABELS, num_virtual_tokens=4, epochs=0, seed=3)
    initial_prompt = prompt_embedding(untrained).detach().clone()
    loss_before = prompt_loss(untrained, tokenizer, *train_set, LABELS)

    tuned = tune_prompt(lm, tokenizer, *train_set, LABELS, num_virtual_tokens=4, epochs=10, lr=3e-2, seed=3)
    trainable = [name for name, param in tuned.named_parameters() if param.requires_grad]
    assert trainable and all("prompt_encoder" in name for name in trainable)
    assert same_weights(before, weights(lm))  # the teacher's own weights are bit-identical
    assert not torch.equal(prompt_embedding(tuned), initial_prompt)
    loss_after = prompt_loss(tuned, tokenizer, *train_set, LABELS)
    assert loss_after < loss_before - 0.1, (loss_before, loss_after)

    # labelling with the adapter disabled is the original teacher, soft prompt or not
    texts = train_set[0][:8]
    assert torch.allclose(teacher_probs(tuned, tokenizer, texts, LABELS), lm_label_probs(lm, tokenizer, texts, LABELS))


@pytest.mark.filterwarnings("ignore:Position ids are not supported")
def test_samples_are_label_conditioned_seeded_and_scored_by_the_policy_they_come_from(toy_lm, train_set):
    lm, tokenizer = toy_lm
    peft_model = tune_prompt(lm, tokenizer, *train_set, LABELS, num_virtual_tokens=4, epochs=5, seed=0)
    pairs = generate_samples(peft_model, tokenizer, LABELS, per_label=8, max_new_tokens=16, seed=1)
    assert [label for _, label in pairs] == [0] * 8 + [1] * 8
    assert pairs == generate_samples(peft_model, tokenizer, LABELS, per_label=8, max_new_tokens=16, seed=1)
    assert all("<eos>" not in text and "\n" not in text for text, _ in pairs)
    assert sum(len(text.split()) >= 2 for text, _ in pairs) >= 12

    # The log-probabilities PPO uses are those of the distribution generation samples from.
    prefix = tokenizer("positive:", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix] * 4)
    torch.manual_seed(0)
    out = peft_model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=True,
        top_k=0,
        max_new_tokens=6,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    generated = out.sequences[:, len(prefix) :]
    expected = torch.stack(out.logits, 1).log_softmax(-1).gather(-1, generated[..., None]).squeeze(-1)
    rollouts = [Rollout(1, prefix, row.tolist(), "") for row in generated]
    with torch.no_grad():
        logp, mask = sequence_logprobs(peft_model, rollouts)
    assert mask.sum().item() == generated.numel()
    assert torch.allclose(logp[mask.bool()].view_as(expected), expected, atol=1e-4)


def test_a_sample_ends_at_eos_or_newline_and_the_stop_is_an_action():
    class Pieces:
        words = {1: "<eos>", 5: "a", 6: " film", 7: "\n", 8: " more"}

        def decode(self, ids, skip_special_tokens=False):
            return "".join(self.words[i] for i in ids if not (skip_special_tokens and i == 1))

    assert cut_sample(Pieces(), [5, 6, 1, 0, 0], eos=1) == ([5, 6, 1], "a film")
    assert cut_sample(Pieces(), [5, 6, 7, 8, 1], eos=1) == ([5, 6, 7], "a film")
    assert cut_sample(Pieces(), [5, 6, 8], eos=1) == ([5, 6, 8], "a film more")
    assert cut_sample(Pieces(), [1, 5], eos=1) == ([1], "")


def test_clipped_surrogate_by_hand():
    """Schulman et al. 2017 Eq. 7 on ratios 1.5 and 0.5 with advantages +1 and -1, eps = 0.2."""
    logp_old = torch.zeros(2, 2)
    logp_new = torch.log(torch.tensor([[1.5, 0.5], [1.5, 0.5]])).requires_grad_()
    advantages = torch.tensor([1.0, -1.0])
    # A=+1: min(1.5, 1.2)=1.2, min(0.5, 0.8)=0.5 -> 0.85; A=-1: min(-1.5, -1.2)=-1.5, min(-0.5, -0.8)=-0.8 -> -1.15
    loss = clipped_surrogate(logp_new, logp_old, advantages, torch.ones(2, 2), clip=0.2)
    assert loss.item() == pytest.approx(-(0.85 - 1.15) / 2)
    loss.backward()
    # clipped terms (ratio 1.5 with A > 0, ratio 0.5 with A < 0) give no gradient; the others do
    assert logp_new.grad[0, 0] == 0 and logp_new.grad[1, 1] == 0
    assert logp_new.grad[0, 1] != 0 and logp_new.grad[1, 0] != 0
    masked = clipped_surrogate(logp_new, logp_old, advantages, torch.tensor([[1.0, 1.0], [1.0, 0.0]]), clip=0.2)
    assert masked.item() == pytest.approx(-(0.85 - 1.5) / 2)


def test_whiten_centres_and_scales():
    out = whiten(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert out.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert out.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_ppo_raises_the_reward_of_a_fresh_batch(extracted):
    samples, _, _ = extracted
    assert len(samples.ppo_history) == SETTINGS.ppo_steps
    assert samples.rewards_after_ppo > samples.rewards_after_sft + 0.1, (
        samples.rewards_after_sft,
        samples.rewards_after_ppo,
    )


def test_samples_carry_the_label_they_were_written_for(extracted):
    samples, before, after = extracted
    assert same_weights(before, after)  # extraction never changes the teacher
    n = len(samples.texts)
    assert n > SETTINGS.per_label  # at most 2 x 32, minus samples under 2 words
    assert len(samples.intended) == n and samples.probs.shape == (n, 2)
    assert torch.allclose(samples.probs.sum(-1), torch.ones(n))
    assert set(samples.intended) == {0, 1}
    assert all(len(text.split()) >= 2 for text in samples.texts)
    agreement = (samples.probs.argmax(-1) == torch.tensor(samples.intended)).float().mean().item()
    assert agreement > 0.75, agreement
