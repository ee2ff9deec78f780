"""Annealing KD: the student regresses teacher logits scaled up gradually from soft to sharp."""

from __future__ import annotations

import math

import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import Views


def annealing_factor(progress: float, max_temperature: int) -> float:
    """``Phi(T) = 1 - (T - 1) / tau_max`` with ``T`` stepping from ``tau_max`` down to 1 over training."""
    # rounded first: (1 - 6/7) * 7 is 1.0000000000000004 in floating point, not 1
    temperature = max(1, math.ceil(round((1 - progress) * max_temperature, 9)))
    return 1 - (temperature - 1) / max_temperature


def annealing_loss(student_logits: Tensor, teacher_logits: Tensor, factor: float) -> Tensor:
    """``|| z_S - Phi(T) z_T ||^2`` averaged over the batch and the classes."""
    return F.mse_loss(student_logits.float(), factor * teacher_logits.float())


@register_method("annealing_kd")
class AnnealingKD(Method):
    """Phase I of Annealing KD: MSE to annealed teacher logits.

    Jafari et al., "Annealing Knowledge Distillation", arXiv 2104.07163, Eq. 4:
    ``L = || z_s(x) - Phi(T) z_t(x) ||_2^2`` with ``Phi(T) = 1 - (T-1)/tau_max`` and ``T`` going from
    ``tau_max`` to 1 in equal parts of the stage. Phase II (hard labels only) is a following stage
    with ``ce``. Needs classifier logits.
    """

    needs = frozenset({"logits"})
    paper = "arXiv:2104.07163"
    summary = "MSE to teacher logits scaled by an annealing factor that rises to 1"

    class Args(MethodArgs):
        max_temperature: PositiveInt = 7

    def setup(self, pair: Pair) -> None:
        if pair.teacher is None or pair.teacher.kind != "classifier" or pair.student.kind != "classifier":
            raise IncompatibleError("annealing_kd needs classifier logits from teacher and student")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        factor = annealing_factor(batch.progress, self.args.max_temperature)
        student_logits = student.require("logits", "annealing_kd")
        return annealing_loss(student_logits, teacher.require("logits", "annealing_kd"), factor)
