"""RankCSE: contrastive learning plus rank consistency and listwise ranking distillation from teachers."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.contrastive import cosine_matrix, info_nce
from kdforge.models.views import Views


def _off_diagonal(matrix: Tensor) -> Tensor:
    n = matrix.size(0)
    return matrix.masked_select(~torch.eye(n, dtype=torch.bool, device=matrix.device)).view(n, n - 1)


def jensen_shannon(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Row-wise ``JSD(P || Q) = KL(P || M)/2 + KL(Q || M)/2``, ``M = (P + Q)/2``, averaged over rows."""
    p, q = F.softmax(p_logits, -1), F.softmax(q_logits, -1)
    log_m = ((p + q) / 2).clamp(min=1e-12).log()
    kl_p = (p * (p.clamp(min=1e-12).log() - log_m)).sum(-1)
    kl_q = (q * (q.clamp(min=1e-12).log() - log_m)).sum(-1)
    return ((kl_p + kl_q) / 2).mean()


def listnet(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """``-1/N sum_i sum_{j != i} softmax_j(teacher_ij) log softmax_j(student_ij)`` (top-one ListNet)."""
    target = F.softmax(_off_diagonal(teacher_scores), -1)
    return -(target * F.log_softmax(_off_diagonal(student_scores), -1)).sum(-1).mean()


def listmle(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """Plackett-Luce negative log-likelihood of the teacher's ranking of each row under the student's scores."""
    teacher, student = _off_diagonal(teacher_scores), _off_diagonal(student_scores)
    order = torch.argsort(teacher, dim=-1, descending=True)
    ranked = student.gather(-1, order)
    # log sum_{m >= k} exp(s_m), from the bottom of the ranking up
    tail = torch.logcumsumexp(ranked.flip(-1), dim=-1).flip(-1)
    return (tail - ranked).sum(-1).mean()


@register_method("rankcse")
class RankCSE(Method):
    """Unsupervised sentence embeddings that learn the teachers' ranking of in-batch neighbours.

    Liu et al., "RankCSE: Unsupervised Sentence Representations Learning via Learning to Rank",
    arXiv 2305.16726, Sec. 3: ``L = L_infoNCE + beta L_consistency + gamma L_rank``, where
    ``L_infoNCE`` is SimCSE's loss on two dropout views (``tau``), ``L_consistency`` the
    Jensen-Shannon divergence between the two views' similarity distributions (Eq. 6), and
    ``L_rank`` listwise distillation of the teachers' similarity ranking (``tau2``; Eq. 8
    ListNet, Eq. 9 ListMLE). Several teachers mix their scaled similarity matrices with
    ``teacher_weights``. The student's ranking scores use ``tau3`` (default ``tau2 / 2`` for
    ListNet, ``tau2`` for ListMLE); a sentence's similarity to itself is left out of the lists.
    """

    needs = frozenset({"embedding"})
    multi_teacher = True
    second_view = "dropout"
    paper = "arXiv:2305.16726"
    summary = "SimCSE + JS rank consistency + ListNet/ListMLE distillation of teacher rankings"

    class Args(MethodArgs):
        form: Literal["listnet", "listmle"] = "listnet"
        tau: PositiveFloat = 0.05
        tau2: PositiveFloat = 0.05
        tau3: PositiveFloat | None = None
        beta: float = 1.0
        gamma: float = 1.0
        teacher_weights: list[float] | None = None

    def setup(self, pair: Pair) -> None:
        if pair.student.kind != "embedding" or not pair.teachers:
            raise IncompatibleError("rankcse needs sentence-embedding teachers and student (task: sts)")
        weights = self.args.teacher_weights
        if weights is not None and len(weights) != len(pair.teachers):
            raise IncompatibleError(f"rankcse: {len(weights)} teacher_weights for {len(pair.teachers)} teachers")
        self.weights = weights or [1.0 / len(pair.teachers)] * len(pair.teachers)

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        a = self.args
        h1 = student.require("embedding", "rankcse")
        second = student.second
        assert second is not None
        h2 = second.require("embedding", "rankcse")
        loss = info_nce(h1, h2, a.tau)
        if a.beta:
            loss = loss + a.beta * jensen_shannon(cosine_matrix(h1, h2) / a.tau, cosine_matrix(h2, h1) / a.tau)
        if a.gamma:
            target = sum(
                w * cosine_matrix(e, e) / a.tau2
                for w, e in zip(self.weights, (t.require("embedding", "rankcse") for t in teacher), strict=True)
            )
            tau3 = a.tau3 or (a.tau2 / 2 if a.form == "listnet" else a.tau2)
            scores = cosine_matrix(h1, h2) / tau3
            loss = loss + a.gamma * (listnet(scores, target) if a.form == "listnet" else listmle(scores, target))
        return loss
