"""Uncertainty-based teacher adoption: uncertain samples learn from the small teacher, confident ones from the large."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.multi_teacher import check_classifiers, per_sample_kl, per_sample_mse
from kdforge.models.views import Views


def student_uncertainty(logits: Tensor) -> Tensor:
    """``u(x) = H(softmax(z_S)) / log C`` in [0, 1] for each sample."""
    log_p = F.log_softmax(logits.float(), -1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(logits.size(-1))


def adoption_weights(uncertainty: Tensor, teachers: int, mode: str) -> Tensor:
    """``[B, K]`` weights of teachers ordered small to large.

    ``hard``: rank samples by uncertainty and give the most uncertain share to the smallest
    teacher; ``soft``: ``r_k = u + (1 - 2u) k/(K-1)`` renormalised to sum to 1 (for two teachers,
    ``u`` to the small and ``1 - u`` to the large); ``soft`` uses the batch mean ``u``,
    ``soft_instance`` each sample's.
    """
    batch = uncertainty.size(0)
    if teachers == 1:
        return uncertainty.new_ones(batch, 1)
    if mode == "hard":
        order = torch.argsort(uncertainty, descending=True)
        group = torch.div(torch.arange(batch, device=uncertainty.device) * teachers, batch, rounding_mode="floor")
        weights = uncertainty.new_zeros(batch, teachers)
        weights[order, group] = 1.0
        return weights
    u = uncertainty if mode == "soft_instance" else uncertainty.mean().expand(batch)
    k = torch.arange(teachers, device=u.device, dtype=u.dtype) / (teachers - 1)
    rates = u[:, None] + (1 - 2 * u[:, None]) * k[None, :]
    return rates / rates.sum(-1, keepdim=True)


@register_method("uncertainty")
class Uncertainty(Method):
    """Dynamic teacher adoption by the student's own uncertainty.

    Li et al., "Dynamic Knowledge Distillation for Pre-trained Language Models", arXiv 2109.11295,
    Sec. 3.1: the student's uncertainty ``u(x) = H(p_S(x)) / log C`` decides which teacher a sample
    learns from: uncertain samples from the smaller teacher, confident ones from the larger
    (``hard`` split of the batch by rank, or ``soft`` / ``soft_instance`` weights). List the
    teachers from small to large. KD is ``T^2 KL`` (``loss: kl``) or logit MSE (``loss: mse``, the
    paper's default). Add the gold labels with ``ce``.
    """

    needs = frozenset({"logits"})
    multi_teacher = True
    paper = "arXiv:2109.11295"
    summary = "teachers weighted per sample by the student's prediction entropy"

    class Args(MethodArgs):
        mode: Literal["hard", "soft", "soft_instance"] = "hard"
        loss: Literal["kl", "mse"] = "kl"
        temperature: PositiveFloat = 1.0

    def setup(self, pair: Pair) -> None:
        check_classifiers(pair, "uncertainty", at_least=2)

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        logits = student.require("logits", "uncertainty")
        weights = adoption_weights(student_uncertainty(logits), len(teacher), self.args.mode)  # [B, K]
        losses = []
        for t in teacher:
            z_t = t.require("logits", "uncertainty")
            losses.append(
                per_sample_mse(logits, z_t)
                if self.args.loss == "mse"
                else per_sample_kl(logits, z_t, self.args.temperature)
            )
        per_teacher = torch.stack(losses, -1)  # [B, K]
        # each teacher's loss is averaged over the samples assigned to it
        return ((weights * per_teacher).sum(0) / weights.sum(0).clamp(min=1e-8)).sum() / len(teacher)
