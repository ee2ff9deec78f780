"""Forward KL between next-token distributions: word-level KD for decoders."""

from __future__ import annotations

from torch import Tensor

from kdforge.methods.base import register_method
from kdforge.methods.token_divergence import TokenDivergence, forward_kl


@register_method("forward_kl")
class ForwardKL(TokenDivergence):
    """Forward KL ``KL(p_T ‖ q_S)`` at every position that predicts a real token (mode-covering).

    Word-level KD (Kim & Rush, arXiv 1606.07947, Sec. 3.1) written as a KL, as DistiLLM's
    ``forward_kl`` (arXiv 2402.03898) and GKD's ``beta = 0`` (arXiv 2306.13649, Eq. 1) use it:
    the mean over real tokens of ``sum_v p_T(v) log(p_T(v) / q_S(v))``. The KL form differs from
    the soft cross-entropy by the teacher's entropy, so identical models give 0. Optional
    temperature, no ``T^2`` factor. Teacher and student predict over the same vocabulary.
    """

    paper = "arXiv:2306.13649"
    summary = "forward KL(p_T ‖ q_S) on next-token (or token) distributions, mode-covering"

    def divergence(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        return forward_kl(student_logits, teacher_logits, temperature)
