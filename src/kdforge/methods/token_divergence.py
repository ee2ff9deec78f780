"""Divergences between the teacher's and the student's token distributions (decoder distillation).

Pure functions of logit rows ``[N, V]`` (one row per compared position), each averaged over the
rows; the choice of rows; and the class the ``forward_kl``, ``reverse_kl``, ``jsd`` and ``tvd``
methods share. ``temperature`` divides both models' logits; unlike ``kd`` no ``T^2`` factor is
applied (the TRL / DistiLLM convention), so ``weight`` sets the scale.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair
from kdforge.methods.predictions import check_same_predictions, prediction_rows
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    return F.log_softmax(logits.float() / temperature, dim=-1)


def _mean(per_row: Tensor) -> Tensor:
    """Mean over rows; zero (not NaN) when no position is compared."""
    return per_row.sum() / max(1, per_row.numel())


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``KL(p_T || q_S) = sum_v p_T(v) (log p_T(v) - log q_S(v))`` per row: mode-covering."""
    log_q, log_p = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return _mean((log_p.exp() * (log_p - log_q)).sum(-1))


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``KL(q_S || p_T) = sum_v q_S(v) (log q_S(v) - log p_T(v))`` per row: mode-seeking."""
    log_q, log_p = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    return _mean((log_q.exp() * (log_q - log_p)).sum(-1))


def generalized_jsd(
    student_logits: Tensor, teacher_logits: Tensor, beta: float = 0.5, temperature: float = 1.0
) -> Tensor:
    """GKD's generalized Jensen-Shannon divergence, in TRL's convention (``generalized_jsd_loss``).

    ``JSD_beta = beta KL(p_T || M) + (1 - beta) KL(q_S || M)`` with ``M = beta p_T + (1 - beta) q_S``.
    The formula is 0 at both ends, so the ends are defined as the limits of its direction:
    ``beta = 0`` is the forward KL ``KL(p_T || q_S)``, ``beta = 1`` the reverse KL ``KL(q_S || p_T)``.
    """
    if beta == 0:
        return forward_kl(student_logits, teacher_logits, temperature)
    if beta == 1:
        return reverse_kl(student_logits, teacher_logits, temperature)
    log_q, log_p = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    to_teacher = (log_p.exp() * (log_p - log_m)).sum(-1)
    to_student = (log_q.exp() * (log_q - log_m)).sum(-1)
    return _mean(beta * to_teacher + (1 - beta) * to_student)


def total_variation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``TVD(p_T, q_S) = 1/2 sum_v |p_T(v) - q_S(v)|`` per row, in [0, 1]."""
    q = _log_probs(student_logits, temperature).exp()
    p = _log_probs(teacher_logits, temperature).exp()
    return _mean(0.5 * (p - q).abs().sum(-1))


class TokenDivergence(Method):
    """A divergence between the teacher's and the student's distributions at every compared position."""

    needs = frozenset({"logits"})
    token_level = True
    student_kind: str | None = None  # set by ``setup``: a causal LM shifts to next-token positions

    class Args(MethodArgs):
        temperature: PositiveFloat | Schedule = 1.0

    def setup(self, pair: Pair) -> None:
        check_same_predictions(pair, self.registered_name)
        self.student_kind = pair.student.kind

    @abstractmethod
    def divergence(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        """The mean divergence over rows."""

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        t, s = prediction_rows(teacher, student, batch, "all", self.registered_name, self.student_kind)
        return self.divergence(s, t, value_at(self.args.temperature, batch.progress))
