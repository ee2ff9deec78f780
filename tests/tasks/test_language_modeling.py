"""The mlm and lm tasks: BERT masking, the targets they make, and perplexity by hand."""

from __future__ import annotations

import math

import datasets
import pytest
import torch

from kdforge.engine.collate import Collator
from kdforge.methods import Batch
from kdforge.models import load_model
from kdforge.recipe.schema import DataSource, TaskSpec
from kdforge.tasks import TASKS
from kdforge.tasks.data import sentences_of
from kdforge.tasks.language_modeling import mask_tokens
from tests.conftest import make_tokenizer, sentences
from tests.language_models import causal_lm_folder, masked_lm_folder


def task(name: str):
    return TASKS.get(name)(TaskSpec(name=name))


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory):
    return load_model(str(masked_lm_folder(tmp_path_factory.mktemp("mlm") / "m")))


@pytest.fixture(scope="module")
def causal_lm(tmp_path_factory):
    return load_model(str(causal_lm_folder(tmp_path_factory.mktemp("clm") / "c")))


def test_masking_follows_berts_rule():
    tokenizer = make_tokenizer()
    ids = torch.randint(5, len(tokenizer), (64, 128), generator=torch.Generator().manual_seed(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    corrupted, labels = mask_tokens(ids, special, tokenizer, 0.15, torch.Generator().manual_seed(1))
    picked = labels != -100
    assert not picked[special].any()
    assert picked.float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(corrupted[~picked], ids[~picked])
    masked = (corrupted[picked] == tokenizer.mask_token_id).float().mean().item()
    kept = (corrupted[picked] == ids[picked]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.03)  # 10% kept, plus random draws of the same id


def test_mlm_batches_share_the_corrupted_text_and_repeat_per_epoch(masked_lm):
    rows = [{"text": t, "index": i} for i, t in enumerate(sentences(12, seed=2))]
    collator = Collator(masked_lm, [masked_lm], task=task("mlm"))
    first = collator(rows)
    assert first.teacher_inputs[0] is first.student_inputs  # teacher and student read the same ids
    assert (first.student_inputs["input_ids"] == masked_lm.tokenizer.mask_token_id).any()
    assert torch.equal(collator(rows).labels, first.labels)  # the same masks on a rerun
    collator.epoch = 1
    assert not torch.equal(collator(rows).labels, first.labels)  # fresh masks each epoch
    real = first.student_inputs["attention_mask"].bool()
    assert ((first.labels != -100) <= real).all()


def test_lm_targets_are_the_ids_with_padding_ignored(causal_lm):
    rows = [{"text": t, "index": i} for i, t in enumerate(["the cat .", "a dog sees the old house ."])]
    batch = Collator(causal_lm, [], task=task("lm"))(rows)
    ids, mask = batch.student_inputs["input_ids"], batch.student_inputs["attention_mask"]
    assert torch.equal(batch.labels[mask == 1], ids[mask == 1]) and (batch.labels[mask == 0] == -100).all()


def test_training_text_is_every_distinct_text(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"premise": "a b", "hypothesis": "c d", "label": 0}\n{"premise": "a b", "hypothesis": "e", "label": 1}\n'
    )
    ds = sentences_of([DataSource.model_validate({"path": str(path)})])
    assert ds["text"] == ["a b", "c d", "e"] and ds["index"] == [0, 1, 2]


def uniform(model):
    """Zero the output layer's input: every position scores every token alike."""
    with torch.no_grad():
        if model.kind == "masked_lm":
            model.hf.cls.predictions.transform.LayerNorm.weight.zero_()
            model.hf.cls.predictions.transform.LayerNorm.bias.zero_()
            model.hf.cls.predictions.bias.zero_()
        else:
            model.hf.transformer.ln_f.weight.zero_()
            model.hf.transformer.ln_f.bias.zero_()
    return model


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tmp_path):
    texts = datasets.Dataset.from_dict({"text": sentences(20, seed=4)})
    size = len(make_tokenizer())
    for name, folder in (("mlm", masked_lm_folder(tmp_path / "m")), ("lm", causal_lm_folder(tmp_path / "c"))):
        metrics = task(name).evaluate(uniform(load_model(str(folder))), texts, "test")
        assert metrics["perplexity"] == pytest.approx(size, rel=1e-4), name
        assert metrics["accuracy"] == 0.0  # argmax of a tie is id 0, [PAD], never a target


def test_perplexity_by_hand_on_one_sentence(causal_lm):
    text = "the cat likes the ball ."
    inputs = causal_lm.tokenize([text])
    with torch.no_grad():
        log_probs = causal_lm(inputs).logits[0].log_softmax(-1)
    ids = inputs["input_ids"][0].tolist()
    nll = [-log_probs[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    metrics = task("lm").evaluate(causal_lm, datasets.Dataset.from_dict({"text": [text]}), "one")
    assert metrics["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)


def test_mlm_needs_a_mask_token():
    from transformers import BertTokenizer

    from kdforge.errors import ModelError

    tokenizer = BertTokenizer(
        vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])}, mask_token=None
    )
    inputs = dict(tokenizer(["a a"], return_tensors="pt"))
    with pytest.raises(ModelError, match="mask token"):
        task("mlm").prepare_batch(Batch(inputs, [inputs], torch.tensor([0])), tokenizer, 0)
