"""Shared pieces of the multi-teacher methods: per-sample soft losses and shape checks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Pair


def per_sample_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 KL(softmax(z_T/T) || softmax(z_S/T))`` for each sample, ``[B]``."""
    log_s = F.log_softmax(student_logits.float() / temperature, -1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1) * temperature**2


def per_sample_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared logit difference for each sample, ``[B]``."""
    return (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)


def check_classifiers(pair: Pair, name: str, at_least: int = 1) -> None:
    """Every teacher and the student are classifiers over the same labels."""
    if len(pair.teachers) < at_least:
        raise IncompatibleError(f"{name} needs at least {at_least} teachers (give 'teachers: [...]')")
    if pair.student.kind != "classifier" or any(t.kind != "classifier" for t in pair.teachers):
        raise IncompatibleError(f"{name} needs classifier logits from every teacher and the student")
    labels = {t.num_labels for t in pair.teachers} | {pair.student.num_labels}
    if len(labels) > 1:
        raise IncompatibleError(f"{name}: teachers and student disagree on the number of labels ({sorted(labels)})")
