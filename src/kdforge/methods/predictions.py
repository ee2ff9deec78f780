"""Prediction logits of either shape: ``[B, C]`` (classes) or ``[B, T, V]`` (tokens), as rows to compare."""

from __future__ import annotations

import torch
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import TOKEN_LABELS, Batch, Pair
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
    teacher: Views,
    student: Views,
    batch: Batch,
    positions: str,
    who: str,
    kind: str | None = None,
    view: str = "logits",
) -> tuple[Tensor, Tensor]:
    """``(teacher, student)`` logits as ``[N, C]`` rows: samples, or the compared token positions.

    A causal LM (``kind``) compares the positions that predict a real token. Other token logits:
    ``positions: masked`` keeps the positions with a target in ``batch.labels`` (the masked tokens
    of MLM, the first sub-token of each word in token classification), ``all`` every real token.
    ``view: token_logits`` reads a joint model's slot logits, whose targets are
    ``batch.extra[TOKEN_LABELS]`` (each word's first sub-token).
    """
    t, s = teacher.require(view, who), student.require(view, who)
    if s.dim() == 2:
        return t, s
    labels = batch.labels if view == "logits" else batch.extra.get(TOKEN_LABELS)
    if kind == "causal_lm":
        keep = predicting_positions(student.attention_mask, labels)
    elif positions == "masked" and labels is not None and labels.dim() == 2:
        keep = labels != IGNORE
    else:
        keep = student.attention_mask.bool()
    return t[keep], s[keep]


def check_same_predictions(pair: Pair, who: str, view: str = "logits") -> None:
    """Same classes or vocabulary; for per-token logits also the same token positions.

    ``view: token_logits`` compares the slot heads of joint intent + slot models (the same tags, and
    the same tokenization, as token classification needs).
    """
    t, s = pair.teacher, pair.student
    if view == "token_logits":
        if t is None or t.kind != "joint" or s.kind != "joint":
            raise IncompatibleError(
                f"{who} with view: token_logits reads the slot head of joint models (task: intent_slots)"
            )
        if t.num_slots != s.num_slots:
            raise IncompatibleError(f"{who}: the teacher has {t.num_slots} slot tags and the student {s.num_slots}")
        if not pair.same_tokenizer:
            raise IncompatibleError(f"{who} compares token positions; teacher and student must tokenize alike")
        return
    if t is None or t.kind not in HEADED or s.kind != t.kind:
        raise IncompatibleError(
            f"{who} needs prediction logits of the same kind from teacher and student "
            "(task: classification, token_classification, intent_slots, mlm or lm)"
        )
    if t.prediction_size != s.prediction_size:
        what = "labels" if t.kind in LABELLED else "vocabulary entries"
        raise IncompatibleError(
            f"{who}: the teacher has {t.prediction_size} {what} and the student {s.prediction_size}"
        )
    if s.kind in PER_TOKEN and not pair.same_tokenizer:
        raise IncompatibleError(f"{who} compares token positions; teacher and student must tokenize alike")
