"""Prediction logits of either shape: ``[B, C]`` (classes) or ``[B, T, V]`` (tokens), as rows to compare."""

from __future__ import annotations

import torch
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Pair
from kdforge.models.text_model import HEADED, LABELLED, PER_TOKEN
from kdforge.models.views import Views

IGNORE = -100
LANGUAGE_MODELS = ("masked_lm", "causal_lm")


def predicting_positions(attention_mask: Tensor, labels: Tensor | None = None) -> Tensor:
    """Causal LM: the real positions whose next token is a target, ``[B, T]`` booleans.

    Position ``t`` predicts token ``t + 1``; the target is ``labels[t + 1]`` when labels are
    given (``-100``: no target), else any real next token. Works with left or right padding.
    """
    real = attention_mask.bool()
    has_target = labels != IGNORE if labels is not None and labels.shape == real.shape else real
    keep = torch.zeros_like(real)
    keep[:, :-1] = real[:, :-1] & has_target[:, 1:]
    return keep


def prediction_rows(
    teacher: Views, student: Views, batch: Batch, positions: str, who: str, kind: str | None = None
) -> tuple[Tensor, Tensor]:
    """``(teacher, student)`` logits as ``[N, C]`` rows: samples, or the compared token positions.

    A causal LM (``kind``) compares the positions that predict a real token. Other token logits:
    ``positions: masked`` keeps the positions with a target in ``batch.labels`` (the masked tokens
    of MLM, the first sub-token of each word in token classification), ``all`` every real token.
    """
    t, s = teacher.require("logits", who), student.require("logits", who)
    if s.dim() == 2:
        return t, s
    labels = batch.labels
    if kind == "causal_lm":
        keep = predicting_positions(student.attention_mask, labels)
    elif positions == "masked" and labels is not None and labels.dim() == 2:
        keep = labels != IGNORE
    else:
        keep = student.attention_mask.bool()
    return t[keep], s[keep]


def check_same_predictions(pair: Pair, who: str) -> None:
    """Same classes or vocabulary; for per-token logits also the same token positions."""
    t, s = pair.teacher, pair.student
    if t is None or t.kind not in HEADED or s.kind != t.kind:
        raise IncompatibleError(
            f"{who} needs prediction logits of the same kind from teacher and student "
            "(task: classification, token_classification, mlm or lm)"
        )
    if t.prediction_size != s.prediction_size:
        what = "labels" if t.kind in LABELLED else "vocabulary entries"
        raise IncompatibleError(
            f"{who}: the teacher has {t.prediction_size} {what} and the student {s.prediction_size}"
        )
    if s.kind in PER_TOKEN and not pair.same_tokenizer:
        raise IncompatibleError(f"{who} compares token positions; teacher and student must tokenize alike")
