"""Listwise distillation: the bi-encoder's distribution over a query's passages follows the cross-encoder's."""

from __future__ import annotations

from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.kd import kd_loss
from kdforge.methods.ranking import ScoreArgs, check_ranking_pair, score_lists
from kdforge.models.views import Views


def kl_listwise_loss(student_scores: Tensor, teacher_scores: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 * 1/B sum_b KL(softmax(t_b / T) || softmax(s_b / T))`` over ``[B, P]`` score lists."""
    return kd_loss(student_scores, teacher_scores, temperature)


@register_method("kl_listwise")
class KLListwise(Method):
    """KL divergence between the cross-encoder's and the bi-encoder's softmax over each passage list.

    RocketQAv2 (Ren et al., arXiv 2110.07367), Sec. 3 (dynamic listwise distillation):
    ``L = 1/B sum_b KL(softmax(s_ce(q_b, .)) || softmax(s_de(q_b, .)))`` over a query's list of
    one relevant and several irrelevant passages; here the cross-encoder is frozen, as in
    sentence-transformers' ``DistillKLDivLoss`` (which cites Lin et al., arXiv 2010.11386), whose
    temperature and ``T^2`` factor are kept: ``T^2 * KL(softmax(t / T) || softmax(s / T))``.
    Student score: ``scale * cos(q, p)`` (or a dot product); teacher score: the cross-encoder's
    logit (1 label) or relevant-minus-irrelevant logit (2). Needs task ``ranking``.
    """

    needs = frozenset({"embedding"})  # the student's; the teacher gives its logits
    paper = "arXiv:2110.07367"
    summary = "KL between teacher and student softmax distributions over each query's passages"

    class Args(ScoreArgs):
        temperature: PositiveFloat = 1.0

    def teacher_needs(self) -> frozenset[str]:
        return frozenset({"logits"})

    def setup(self, pair: Pair) -> None:
        check_ranking_pair(pair, "kl_listwise")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        t, s = score_lists(teacher, student, self.args, "kl_listwise")
        return kl_listwise_loss(s, t, self.args.temperature)
