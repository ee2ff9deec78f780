"""A causal LM used as a classifier: how the RetriKT teacher labels the samples it wrote.

RetriKT (arXiv 2310.15594) builds its knowledge store from samples the LLM generates and then
classifies itself. A causal LM classifies by completion: after ``text + SEPARATOR`` it puts
probability on the first token of each label word, and those C numbers, renormalised, are the
teacher's soft label (the verbalizer of PET, Schick & Schuetze 2021, arXiv 2001.07676):

    p(c | x) = softmax_c( z(x)[v_c] ),  z(x) = next-token logits after ``x + SEPARATOR``,

where ``v_c`` is the first token of `` " " + label_words[c]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from inspect import signature

import torch
from torch import Tensor, nn

from kdforge.errors import ModelError
from kdforge.knowledge.lm import device_of, ensure_causal_lm, pad_batch, pad_id
from kdforge.models.modes import evaluating

#: Put between a text and its label word. It has no trailing space: in BPE vocabularies the space
#: belongs to the next word (" positive" is one token, "positive" after a space is not), so the
#: label word is read as the single token `` " " + word`` that follows the arrow.
SEPARATOR = " =>"


def label_token_ids(tokenizer, label_words: Sequence[str]) -> list[int]:
    """The id of the first token of each label word as it follows ``SEPARATOR``.

    Read as the first token where ``SEPARATOR + " " + word`` and ``SEPARATOR`` tokenize
    differently, so tokenizers that merge or mark spaces their own way are handled alike.
    """
    if len(label_words) < 2:
        raise ModelError(f"a classifier needs at least 2 label words, got {list(label_words)!r}")
    probe = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    ids = []
    for word in label_words:
        full = tokenizer(f"{SEPARATOR} {word.strip()}", add_special_tokens=False)["input_ids"]
        common = next(
            (i for i, (a, b) in enumerate(zip(probe, full, strict=False)) if a != b), min(len(probe), len(full))
        )
        if not word.strip() or len(full) <= common:
            raise ModelError(
                f"the label word {word!r} tokenizes to nothing with the teacher's tokenizer; "
                "give each label a word the tokenizer knows (e.g. 'positive', 'negative')"
            )
        token = full[common]
        if tokenizer.unk_token_id is not None and token == tokenizer.unk_token_id:
            raise ModelError(
                f"the label word {word!r} is not in the teacher's vocabulary (it becomes {tokenizer.unk_token!r}); "
                "choose a word the tokenizer knows"
            )
        ids.append(int(token))
    if len(set(ids)) < len(ids):
        raise ModelError(
            f"the label words {list(label_words)!r} start with the same token for the teacher's tokenizer, "
            "so the teacher cannot tell them apart; choose words that differ in their first token"
        )
    return ids


def lm_label_probs(
    lm: nn.Module, tokenizer, texts: Sequence[str], label_words: Sequence[str], batch_size: int = 16
) -> Tensor:
    """Soft labels ``[N, C]`` of a causal LM for ``texts``: the softmax over the C label-word logits.

    Padding may be on either side (``tokenizer.padding_side``): the logits are read at each row's
    last real token, and position ids follow the attention mask, so both give the same numbers.
    """
    ensure_causal_lm(lm)
    targets = torch.tensor(label_token_ids(tokenizer, label_words))
    if not texts:
        return torch.empty(0, len(targets))
    side = getattr(tokenizer, "padding_side", "right")
    pad = pad_id(tokenizer)
    device = device_of(lm)
    takes_positions = "position_ids" in signature(lm.forward).parameters
    out = []
    with torch.no_grad(), evaluating(lm):
        for start in range(0, len(texts), batch_size):
            rows = [tokenizer(f"{text}{SEPARATOR}")["input_ids"] for text in texts[start : start + batch_size]]
            ids, mask = pad_batch(rows, pad, side)
            ids, mask = ids.to(device), mask.to(device)
            extra = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if takes_positions else {}
            logits = lm(input_ids=ids, attention_mask=mask, **extra).logits
            last = (mask * torch.arange(mask.shape[1], device=device)).argmax(-1)
            picked = logits[torch.arange(len(rows), device=device), last][:, targets.to(device)]
            out.append(picked.float().softmax(-1).cpu())
    return torch.cat(out)
