"""Continuation KD: an annealed, margin-gated soft loss handed over smoothly to the hard labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.annealing_kd import annealing_factor
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import Views


def continuation_loss(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, factor: float, margin: float, psi: float
) -> Tensor:
    """``psi * CE(z_S, y) + (1 - psi) * mean_i [m_i > margin * Phi] m_i`` with ``m_i = MSE(z_S,i, Phi z_T,i)``."""
    per_sample = (student_logits.float() - factor * teacher_logits.float()).pow(2).mean(-1)
    gated = torch.where(per_sample > margin * factor, per_sample, torch.zeros_like(per_sample)).mean()
    return psi * F.cross_entropy(student_logits.float(), labels) + (1 - psi) * gated


def hard_label_share(progress: float, separation: float, denominator: float) -> float:
    """``psi`` grows linearly with training and becomes 1 after ``separation``."""
    return 1.0 if progress >= separation else min(1.0, progress / denominator)


@register_method("continuation_kd")
class ContinuationKD(Method):
    """Annealed soft targets with a margin, mixed with the hard-label loss by a rising share ``psi``.

    Jafari et al., "Continuation KD: Improved Knowledge Distillation through the Lens of
    Continuation Optimization", arXiv 2212.05998, Sec. 3: ``L = psi CE(z_s, y) + (1 - psi) L_soft`` where the
    soft term is Annealing KD's ``MSE(z_s, Phi(T) z_t)`` counted only where it exceeds
    ``margin * Phi`` (the loss is kept "continuous" as the target sharpens). Defaults follow the
    GKD implementation (``tau_max`` 10, margin 1, ``psi = t / 1.333`` until 0.666 of training, then
    1). Needs classifier logits and labels.
    """

    needs = frozenset({"logits"})
    needs_labels = True
    paper = "arXiv:2212.05998"
    summary = "annealed margin-gated logit MSE handed over to cross-entropy"

    class Args(MethodArgs):
        max_temperature: PositiveInt = 10
        margin: float = 1.0
        separation: PositiveFloat = 0.666
        denominator: PositiveFloat = 1.333

    def setup(self, pair: Pair) -> None:
        if pair.teacher is None or pair.teacher.kind != "classifier" or pair.student.kind != "classifier":
            raise IncompatibleError("continuation_kd needs classifier logits from teacher and student")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if batch.labels is None:
            raise IncompatibleError("continuation_kd needs labels, but the training data has none")
        return continuation_loss(
            student.require("logits", "continuation_kd"),
            teacher.require("logits", "continuation_kd"),
            batch.labels,
            annealing_factor(batch.progress, self.args.max_temperature),
            self.args.margin,
            hard_label_share(batch.progress, self.args.separation, self.args.denominator),
        )
