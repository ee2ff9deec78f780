"""Hinton et al.'s soft-target distillation on classifier logits."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.predictions import check_same_predictions, prediction_rows
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch.

    The KL form differs from Hinton's soft cross-entropy by the teacher's entropy, a constant,
    so the gradients are the same and identical logits give exactly zero.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


@register_method("kd")
class KD(Method):
    """Soft-target KD: match the teacher's temperature-softened class distribution.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531,
    Sec. 2: soft targets at temperature T, gradients scaled by T^2. The temperature may follow a
    schedule (``{schedule: linear, start: 4, end: 1}``). Works on class logits and on token logits
    (MLM: the masked positions, or ``positions: all``; token classification: the first sub-token of
    each word, the positions that are scored, or ``positions: all`` for every real sub-token; causal
    LM: the positions that predict a real token), for teacher and student predicting over the same
    classes or vocabulary. ``view: token_logits`` distils the slot head of joint intent + slot models
    (task ``intent_slots``) at the same positions as token classification; a second ``kd`` entry with
    the default ``view: logits`` distils their intent head.
    """

    needs = frozenset({"logits"})
    paper = "arXiv:1503.02531"
    summary = "soft targets at temperature T, T^2-scaled KL on logits"

    class Args(MethodArgs):
        temperature: PositiveFloat | Schedule = 1.0
        positions: Literal["masked", "all"] = "masked"
        view: Literal["logits", "token_logits"] = "logits"

    student_kind: str | None = None  # set by ``setup``: a causal LM compares next-token positions

    def student_needs(self) -> frozenset[str]:
        return frozenset({self.args.view})

    def teacher_needs(self) -> frozenset[str]:
        return self.student_needs()

    def setup(self, pair: Pair) -> None:
        check_same_predictions(pair, "kd", self.args.view)
        self.student_kind = pair.student.kind

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        temperature = value_at(self.args.temperature, batch.progress)
        t, s = prediction_rows(teacher, student, batch, self.args.positions, "kd", self.student_kind, self.args.view)
        return kd_loss(s, t, temperature)
