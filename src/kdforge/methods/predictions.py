"""Prediction logits of either shape: ``[B, C]`` (classes) or ``[B, T, V]`` (tokens), as rows to compare."""

from __future__ import annotations

from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Pair
from kdforge.models.views import Views

IGNORE = -100


def prediction_rows(teacher: Views, student: Views, batch: Batch, positions: str, who: str) -> tuple[Tensor, Tensor]:
    """``(teacher, student)`` logits as ``[N, C]`` rows: samples, or the chosen token positions.

    For token logits, ``positions: masked`` keeps the positions with a target in ``batch.labels``
    (the masked tokens of MLM), ``all`` every real token.
    """
    t, s = teacher.require("logits", who), student.require("logits", who)
    if s.dim() == 2:
        return t, s
    labels = batch.labels
    if positions == "masked" and labels is not None and labels.dim() == 2:
        keep = labels != IGNORE
    else:
        keep = student.attention_mask.bool()
    return t[keep], s[keep]


def check_same_predictions(pair: Pair, who: str) -> None:
    """Teacher and student predict over the same classes or vocabulary."""
    t, s = pair.teacher, pair.student
    headed = ("classifier", "masked_lm", "causal_lm")
    if t is None or t.kind not in headed or s.kind != t.kind:
        raise IncompatibleError(
            f"{who} needs prediction logits of the same kind from teacher and student (task: classification, mlm or lm)"
        )
    if t.prediction_size != s.prediction_size:
        what = "labels" if t.kind == "classifier" else "vocabulary entries"
        raise IncompatibleError(
            f"{who}: the teacher has {t.prediction_size} {what} and the student {s.prediction_size}"
        )
