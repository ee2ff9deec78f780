"""TMKD: the student learns from the average of several teachers' soft losses."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.multi_teacher import check_classifiers, per_sample_kl, per_sample_mse
from kdforge.models.views import Views


def average_teacher_loss(student_logits: Tensor, teacher_logits: list[Tensor], loss: str, temperature: float) -> Tensor:
    """``1/N sum_i L(z_S, z_Ti)``, each ``L`` averaged over the batch."""
    per_teacher = [
        (per_sample_mse(student_logits, t) if loss == "mse" else per_sample_kl(student_logits, t, temperature)).mean()
        for t in teacher_logits
    ]
    return sum(per_teacher) / len(per_teacher)


@register_method("tmkd")
class TMKD(Method):
    """Multi-teacher distillation with every teacher's soft targets weighted equally.

    Yang et al., "Model Compression with Two-stage Multi-teacher Knowledge Distillation for Web
    Question Answering System", arXiv 1910.08381, Sec. 3: the student fits the soft outputs of N
    teachers, ``L_soft = 1/N sum_i MSE(y_S, y_Ti)`` (GKD's single-head form; ``loss: kl`` uses
    ``T^2 KL`` instead), in a general stage on unlabeled data and a task stage where the gold
    labels are added (combine with ``ce``).
    """

    needs = frozenset({"logits"})
    multi_teacher = True
    paper = "arXiv:1910.08381"
    summary = "average of the soft losses against several teachers"

    class Args(MethodArgs):
        loss: Literal["mse", "kl"] = "mse"
        temperature: PositiveFloat = 1.0

    def setup(self, pair: Pair) -> None:
        check_classifiers(pair, "tmkd")

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        logits = [t.require("logits", "tmkd") for t in teacher]
        return average_teacher_loss(student.require("logits", "tmkd"), logits, self.args.loss, self.args.temperature)
