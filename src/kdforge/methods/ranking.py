"""Per-query score lists, shared by the ranking methods (``margin_mse``, ``kl_listwise``, ``virt``).

In a ranking batch (``tasks/ranking.py``) row ``b`` is a query with ``P`` candidate passages,
the relevant one first. The student, a bi-encoder, encodes the queries (its ``Views``) and the
passages (``Views.candidates``, ``B * P`` rows) apart; the teacher, a cross-encoder, reads each
(query, passage) pair, so its ``logits`` have ``B * P`` rows too.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import MethodArgs, Pair
from kdforge.models.views import Views

#: The student's score scale for cosine similarity when the recipe gives none (1 / 0.05, as in
#: sentence-transformers' MultipleNegativesRankingLoss): a cosine in [-1, 1] alone cannot follow
#: the spread of a cross-encoder's logits.
COSINE_SCALE = 20.0


def cross_encoder_scores(logits: Tensor) -> Tensor:
    """A cross-encoder's relevance score per pair: its logit with 1 label, relevant minus irrelevant with 2."""
    if logits.size(-1) == 1:
        return logits[..., 0]
    if logits.size(-1) == 2:
        return logits[..., 1] - logits[..., 0]
    raise ValueError(f"a cross-encoder has 1 or 2 labels, not {logits.size(-1)}")


def bi_encoder_scores(queries: Tensor, passages: Tensor, similarity: str = "cosine", scale: float = 1.0) -> Tensor:
    """``scale * sim(q_b, p_bj)`` as a ``[B, P]`` list per query; ``passages`` has ``B * P`` rows."""
    q, p = queries.float(), passages.float()
    if similarity == "cosine":
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    p = p.view(q.size(0), -1, p.size(-1))
    return scale * (q[:, None, :] * p).sum(-1)


class ScoreArgs(MethodArgs):
    """How the student scores a (query, passage) pair.

    ``cosine`` (the default, what evaluation and sentence-transformers use) or ``dot`` (the
    papers' choice). ``scale`` multiplies the similarity; unset, it is 20 for cosine, 1 for dot.
    """

    similarity: Literal["cosine", "dot"] = "cosine"
    scale: PositiveFloat | None = None

    @property
    def factor(self) -> float:
        if self.scale is not None:
            return self.scale
        return COSINE_SCALE if self.similarity == "cosine" else 1.0


def check_ranking_pair(pair: Pair, who: str) -> None:
    """A cross-encoder teacher (1 or 2 labels) and a sentence-embedding student (task: ranking)."""
    teacher, student = pair.teacher, pair.student
    if teacher is None:
        raise IncompatibleError(f"{who} needs a cross-encoder teacher")
    if teacher.kind != "classifier" or teacher.prediction_size not in (1, 2):
        labels = f"a classifier with {teacher.prediction_size} labels"
        what = labels if teacher.kind == "classifier" else f"a model of kind {teacher.kind}"
        raise IncompatibleError(
            f"{who} needs a cross-encoder teacher (a classifier of (query, passage) pairs with 1 or 2 labels), "
            f"not {what} (task: ranking)"
        )
    if student.kind != "embedding":
        raise IncompatibleError(
            f"{who} trains a bi-encoder, but the student is a {student.kind}; give student.model a sentence "
            "encoder (task: ranking)"
        )


def score_lists(teacher: Views | None, student: Views, args: ScoreArgs, who: str) -> tuple[Tensor, Tensor]:
    """The teacher's and the student's ``[B, P]`` score lists of one ranking batch."""
    if student.candidates is None or teacher is None:
        raise IncompatibleError(f"{who} needs ranking batches (task: ranking) and a cross-encoder teacher")
    queries = student.require("embedding", who)
    passages = student.candidates.require("embedding", who)
    s = bi_encoder_scores(queries, passages, args.similarity, args.factor)
    t = cross_encoder_scores(teacher.require("logits", who).float()).view_as(s)
    return t, s
