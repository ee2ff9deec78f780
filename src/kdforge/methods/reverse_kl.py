"""Reverse KL between next-token distributions: mode-seeking decoder distillation."""

from __future__ import annotations

from torch import Tensor

from kdforge.methods.base import register_method
from kdforge.methods.token_divergence import TokenDivergence, reverse_kl


@register_method("reverse_kl")
class ReverseKL(TokenDivergence):
    """Reverse KL ``KL(q_S ‖ p_T)`` at every position that predicts a real token (mode-seeking).

    MiniLLM (Gu et al., arXiv 2306.08543) argues for the reverse KL when a small student cannot
    cover every mode of its teacher; its sequence-level objective is optimised there by policy
    gradient, and its per-token form, used here on the training text as in DistiLLM's
    ``reverse_kl`` (arXiv 2402.03898) and GKD's ``beta = 1`` (arXiv 2306.13649, Eq. 1), is the mean over
    real tokens of ``sum_v q_S(v) log(q_S(v) / p_T(v))``. Optional temperature, no ``T^2``.
    """

    paper = "arXiv:2306.08543"
    summary = "reverse KL(q_S ‖ p_T) on next-token (or token) distributions, mode-seeking"

    def divergence(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        return reverse_kl(student_logits, teacher_logits, temperature)
