"""RetriKT step 1: tune a soft prompt so a frozen causal-LM teacher writes in-domain, labelled text.

RetriKT (arXiv 2310.15594) extracts knowledge from an LLM it never fine-tunes: a few trainable
input vectors (a soft prompt, Lester et al. 2021, arXiv 2104.08691) are learned on the few
labelled training texts so that the teacher, prompted with them, writes samples like those of
the task. The label conditions generation as a hard prefix after the shared soft prompt; each
training sequence is

    [P_1 .. P_m]  "<label word>:"  " <text>"  <eos>

and the loss is the next-token cross-entropy on `` " <text>" <eos>`` only:

    L(P) = - sum_t log p_theta(y_t | P, label prefix, y_<t),   theta frozen, P in R^{m x d}.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import PeftModel, PromptTuningConfig, TaskType, get_peft_model
from torch import Tensor, nn
from tqdm.auto import tqdm

from kdforge.errors import DataError, ModelError, RecipeError
from kdforge.knowledge.lm import device_of, ensure_causal_lm, eos_id, hidden, pad_batch, pad_id
from kdforge.models.modes import evaluating

IGNORE = -100


def label_prefix_ids(tokenizer, label_words: Sequence[str]) -> list[list[int]]:
    """The hard prefix ``"<label word>:"`` of each label, as token ids (never empty)."""
    prefixes = []
    for word in label_words:
        ids = tokenizer(f"{word.strip()}:", add_special_tokens=False)["input_ids"] if word.strip() else []
        if not word.strip() or not ids:
            raise ModelError(
                f"the label word {word!r} tokenizes to nothing with the teacher's tokenizer; "
                "give each label a word the tokenizer knows (e.g. 'positive', 'negative')"
            )
        prefixes.append(list(ids))
    return prefixes


def prompt_embedding(peft_model: PeftModel) -> nn.Parameter:
    """The soft prompt ``[m, d]``: the only trainable tensor of the prompted teacher."""
    return peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight


@contextmanager
def using_prompt(peft_model: PeftModel, weight: Tensor) -> Iterator[None]:
    """Run the prompted teacher with another soft prompt (e.g. the step-1 reference) for a while."""
    param = prompt_embedding(peft_model)
    saved = param.detach().clone()
    with torch.no_grad():
        param.copy_(weight)
    try:
        yield
    finally:
        with torch.no_grad():
            param.copy_(saved)


def _wrap(lm: nn.Module, num_virtual_tokens: int, seed: int) -> PeftModel:
    """Freeze ``lm`` behind a soft prompt initialised from sampled vocabulary embeddings.

    Lester et al. (2021, Sec. 3.2) found vocabulary-sampled initialisation better than random
    vectors, whose scale can be far from the embeddings the model was trained on.
    """
    ensure_causal_lm(lm)
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens)
    with warnings.catch_warnings():
        # PEFT asks Transformers a deprecated question while wrapping; nothing the user can act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        peft_model = get_peft_model(lm, config)
    embeddings = lm.get_input_embeddings().weight
    picked = torch.randint(0, embeddings.shape[0], (num_virtual_tokens,), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        prompt_embedding(peft_model).copy_(embeddings[picked.to(embeddings.device)])
    trainable = [name for name, param in peft_model.named_parameters() if param.requires_grad]
    if any("prompt_encoder" not in name for name in trainable) or not trainable:
        raise ModelError(f"prompt tuning must train the soft prompt only, but these require grad: {trainable}")
    return peft_model


def _training_rows(
    tokenizer, texts: Sequence[str], labels: Sequence[int], label_words: Sequence[str]
) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per text: the label prefix is masked out of the loss."""
    if len(texts) != len(labels) or not texts:
        raise DataError(f"prompt tuning needs as many labels as texts (and some texts): {len(texts)} vs {len(labels)}")
    bad = [label for label in labels if not 0 <= label < len(label_words)]
    if bad:
        raise DataError(f"labels {sorted(set(bad))} are outside 0..{len(label_words) - 1} (one per label word)")
    prefixes = label_prefix_ids(tokenizer, label_words)
    eos = eos_id(tokenizer)
    rows = []
    for text, label in zip(texts, labels, strict=True):
        body = tokenizer(f" {text.strip()}", add_special_tokens=False)["input_ids"] + [eos]
        prefix = prefixes[label]
        rows.append((prefix + body, [IGNORE] * len(prefix) + body))
    return rows


def _loss(peft_model: PeftModel, rows: list[tuple[list[int], list[int]]], pad: int) -> Tensor:
    ids, mask = pad_batch([row for row, _ in rows], pad)
    targets, _ = pad_batch([target for _, target in rows], IGNORE)
    device = device_of(peft_model)
    return peft_model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=targets.to(device)).loss


def tune_prompt(
    lm: nn.Module,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    label_words: Sequence[str],
    *,
    num_virtual_tokens: int = 8,
    epochs: int = 20,
    lr: float = 3e-2,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool | None = None,
) -> PeftModel:
    """Step 1: learn a soft prompt on ``(texts, labels)``; the teacher's own weights stay frozen.

    The returned PEFT model wraps ``lm`` itself (no copy): ``lm``'s parameters get
    ``requires_grad=False`` and are never changed.

    ``lr`` is high (3e-2) as is usual for prompt tuning: only m x d numbers move. The teacher
    runs in eval mode (its dropout would only add noise to the prompt's gradient). ``epochs=0``
    returns the untrained, initialised prompt. ``progress=None`` shows a bar on a terminal only.
    """
    if num_virtual_tokens < 1 or epochs < 0 or batch_size < 1 or lr <= 0:
        raise RecipeError(
            "prompt tuning needs num_virtual_tokens >= 1, epochs >= 0, batch_size >= 1 and lr > 0, got "
            f"num_virtual_tokens={num_virtual_tokens}, epochs={epochs}, batch_size={batch_size}, lr={lr}"
        )
    rows = _training_rows(tokenizer, texts, labels, label_words)
    torch.manual_seed(seed)
    peft_model = _wrap(lm, num_virtual_tokens, seed)
    optimizer = torch.optim.AdamW([prompt_embedding(peft_model)], lr=lr, weight_decay=0.0)
    order = random.Random(seed)
    pad = pad_id(tokenizer)
    with evaluating(peft_model):
        bar = tqdm(range(epochs), desc="RetriKT step 1: prompt tuning", disable=hidden(progress), leave=False)
        for _ in bar:
            order.shuffle(rows)
            for start in range(0, len(rows), batch_size):
                loss = _loss(peft_model, rows[start : start + batch_size], pad)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return peft_model


def prompt_loss(
    peft_model: PeftModel, tokenizer, texts: Sequence[str], labels: Sequence[int], label_words: Sequence[str]
) -> float:
    """Mean next-token loss of the prompted teacher on `` " <text>" <eos>`` after each label prefix."""
    rows = _training_rows(tokenizer, texts, labels, label_words)
    with torch.no_grad(), evaluating(peft_model):
        return float(_loss(peft_model, rows, pad_id(tokenizer)))
