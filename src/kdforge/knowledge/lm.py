"""What the generative knowledge source needs of a causal LM and its tokenizer, checked up front.

RetriKT (arXiv 2310.15594) writes its knowledge store with the teacher itself: the teacher
must predict the next token (a ``*ForCausalLM`` / ``*LMHeadModel``) and its tokenizer must
have an end-of-sequence token (a sample ends there). These checks run before any training, so
a wrong teacher fails in a second with a message, not after an hour with a shape error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kdforge.errors import ModelError

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def base_model(model: nn.Module) -> nn.Module:
    """The wrapped Transformers model of a PEFT model, or the model itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def ensure_causal_lm(model: object) -> None:
    """Raise a ``ModelError`` unless ``model`` (or the model a PEFT wrapper holds) is a causal LM."""
    inner = base_model(model) if isinstance(model, nn.Module) else model
    config = getattr(inner, "config", None)
    name = type(inner).__name__
    if (
        not isinstance(inner, nn.Module)
        or config is None
        or getattr(config, "is_encoder_decoder", False)
        or not callable(getattr(inner, "generate", None))
        or not name.endswith(_CAUSAL_SUFFIXES)
    ):
        raise ModelError(
            f"the teacher {name} is not a causal language model: the generative knowledge source "
            "(RetriKT) needs a model that predicts the next token, e.g. one loaded with "
            "transformers.AutoModelForCausalLM (a *ForCausalLM or *LMHeadModel class)"
        )


def eos_id(tokenizer) -> int:
    """The end-of-sequence id: where a generated sample stops."""
    if tokenizer.eos_token_id is None:
        raise ModelError(
            f"the tokenizer {type(tokenizer).__name__} has no eos token; the generative knowledge source "
            "ends every sample with it (set tokenizer.eos_token)"
        )
    return int(tokenizer.eos_token_id)


def pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's pad token, else its eos token (masked out either way)."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else eos_id(tokenizer)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def pad_batch(rows: Sequence[Sequence[int]], pad: int, side: str = "right") -> tuple[Tensor, Tensor]:
    """Pad token-id rows to one length on ``side``: ``(input_ids [B, L], attention_mask [B, L])``."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def hidden(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` switch: None shows a bar on a terminal only."""
    return None if progress is None else not progress
