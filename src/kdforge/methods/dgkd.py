"""DGKD: every larger model (teacher and assistants) guides the student; teachers drop out at random."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.multi_teacher import check_classifiers, per_sample_kl
from kdforge.models.views import Views


def surviving_teachers(count: int, survival: float, seed: int) -> list[int]:
    """Each teacher kept with probability ``survival``; at least one always stays."""
    generator = torch.Generator().manual_seed(seed)
    kept = [i for i in range(count) if torch.rand((), generator=generator).item() < survival]
    return kept or [int(torch.randint(count, (), generator=generator))]


@register_method("dgkd")
class DGKD(Method):
    """Densely guided distillation: the sum of KD losses from the teacher and all assistants.

    Son et al., "Densely Guided Knowledge Distillation using Multiple Teacher Assistants",
    arXiv 2009.08825, Sec. 3: ``L = sum_i b_i KD(z_S, z_Ti)`` over the teacher and every teacher
    assistant, with the stochastic-learning rule that each guide is dropped at random per step
    (``b_i ~ Bernoulli(survival)``; one guide is always kept). KD is ``T^2 KL`` at ``temperature``.
    Add the gold labels with ``ce``. List the teacher and the assistants as the stage's ``teachers``
    (assistants are earlier stages: ``stage:NAME``).
    """

    needs = frozenset({"logits"})
    multi_teacher = True
    paper = "arXiv:2009.08825"
    summary = "sum of KD from teacher and assistants, each randomly dropped per step"

    class Args(MethodArgs):
        temperature: PositiveFloat = 1.0
        survival: float = Field(0.75, gt=0.0, le=1.0)

    def setup(self, pair: Pair) -> None:
        check_classifiers(pair, "dgkd")

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        kept = surviving_teachers(len(teacher), self.args.survival, batch.seed * 1_000_003 + batch.step)
        student_logits = student.require("logits", "dgkd")
        losses = [
            per_sample_kl(student_logits, teacher[i].require("logits", "dgkd"), self.args.temperature) for i in kept
        ]
        return torch.stack([loss.mean() for loss in losses]).sum()
