"""Sentence-embedding distillation: the student's sentence vector regresses the teacher's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.projection import width_projection
from kdforge.models.views import Views


def embedding_mse_loss(student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
    """``mean((s - t)^2)`` over the batch and the embedding dimensions."""
    return F.mse_loss(student_embedding.float(), teacher_embedding.float())


@register_method("embedding_mse")
class EmbeddingMSE(Method):
    """MSE between student and teacher sentence embeddings.

    Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
    Distillation", arXiv 2004.09813, Sec. 2: ``1/|B| sum_j (M(s_j) - M_hat(s_j))^2``. The
    embedding is the model's sentence output (pooled, normalized if the teacher normalizes).
    A learned projection maps the student's width to the teacher's when they differ.
    """

    needs = frozenset({"embedding"})
    paper = "arXiv:2004.09813"
    summary = "MSE between sentence embeddings (sentence-transformers' distillation)"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        self.proj = width_projection(pair.student.embedding_size, pair.teacher.embedding_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        s = self.proj(student.require("embedding", "embedding_mse"))
        return embedding_mse_loss(s, teacher.require("embedding", "embedding_mse"))
