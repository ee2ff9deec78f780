"""Margin-MSE: the bi-encoder matches the cross-encoder's score margin between passages."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.ranking import ScoreArgs, check_ranking_pair, score_lists
from kdforge.models.views import Views


def margin_mse_loss(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """``mean over b, j of ((s_b0 - s_bj) - (t_b0 - t_bj))^2`` for ``[B, P]`` lists, positive at 0.

    One negative (``P = 2``) is the paper's triple; more negatives give one margin each.
    """
    student_margins = student_scores[:, :1] - student_scores[:, 1:]
    teacher_margins = teacher_scores[:, :1] - teacher_scores[:, 1:]
    return F.mse_loss(student_margins.float(), teacher_margins.float())


@register_method("margin_mse")
class MarginMSE(Method):
    """Cross-architecture distillation of a cross-encoder's score margins into a bi-encoder.

    Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
    Knowledge Distillation", arXiv 2010.02666, Sec. 3:
    ``L(q, p+, p-) = MSE(M_s(q, p+) - M_s(q, p-), M_t(q, p+) - M_t(q, p-))``, averaged over the
    batch. Only the margin is matched, so the student's scores may sit on another scale and
    offset than the teacher's. Student score: ``scale * cos(q, p)`` (or a dot product);
    teacher score: the cross-encoder's logit (1 label) or relevant-minus-irrelevant logit (2).
    Needs task ``ranking``: a cross-encoder teacher and a sentence-embedding student.
    """

    needs = frozenset({"embedding"})  # the student's; the teacher gives its logits
    paper = "arXiv:2010.02666"
    summary = "MSE between student and cross-encoder score margins s(q,p+) - s(q,p-)"
    Args = ScoreArgs

    def teacher_needs(self) -> frozenset[str]:
        return frozenset({"logits"})

    def setup(self, pair: Pair) -> None:
        check_ranking_pair(pair, "margin_mse")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        t, s = score_lists(teacher, student, self.args, "margin_mse")
        return margin_mse_loss(s, t)
