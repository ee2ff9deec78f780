"""GKD's generalized Jensen-Shannon divergence between next-token distributions."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from kdforge.methods.base import register_method
from kdforge.methods.token_divergence import TokenDivergence, generalized_jsd


@register_method("jsd")
class JSD(TokenDivergence):
    """Generalized JSD, interpolating between forward and reverse KL with ``beta``.

    Agarwal et al., "On-Policy Distillation of Language Models" (GKD), arXiv 2306.13649, Eq. 1,
    in TRL's convention (``GKDTrainer.generalized_jsd_loss``): ``M = beta p_T + (1 - beta) q_S``,
    ``JSD_beta = beta KL(p_T || M) + (1 - beta) KL(q_S || M)``; ``beta = 0`` is the forward KL,
    ``beta = 1`` the reverse KL (defined as those limits; between them the value is small near
    either end). Mean over positions that predict a real token, on the training text (GKD's
    off-policy case). Optional temperature, no ``T^2``.
    """

    paper = "arXiv:2306.13649"
    summary = "generalized JSD(beta) on token distributions: 0 = forward KL, 1 = reverse KL"

    class Args(TokenDivergence.Args):
        beta: float = Field(0.5, ge=0.0, le=1.0)

    def divergence(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        return generalized_jsd(student_logits, teacher_logits, self.args.beta, temperature)
