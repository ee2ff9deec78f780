"""Total variation distance between next-token distributions."""

from __future__ import annotations

from torch import Tensor

from kdforge.methods.base import register_method
from kdforge.methods.token_divergence import TokenDivergence, total_variation


@register_method("tvd")
class TVD(TokenDivergence):
    """Total variation distance ``1/2 sum_v |p_T(v) - q_S(v)|`` at every position predicting a real token.

    One of the f-divergences Wen et al. minimise for sequence-level KD ("f-Divergence
    Minimization for Sequence-Level Knowledge Distillation", arXiv 2307.15190, Sec. 3, section
    number not checked against the PDF), here per token on the training text as DistiLLM's
    ``tv_distance`` (arXiv 2402.03898). Symmetric, bounded in [0, 1], 0 only for identical
    distributions. Optional temperature.
    """

    paper = "arXiv:2307.15190"
    summary = "total variation distance on next-token (or token) distributions"

    def divergence(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        return total_variation(student_logits, teacher_logits, temperature)
