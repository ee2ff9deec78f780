"""DistilBERT's cosine loss: align the directions of student and teacher hidden vectors."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.projection import width_projection
from kdforge.methods.reduce import masked_mean
from kdforge.models.views import Views


def cosine_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 - cos(s, t)`` averaged over vectors (real tokens only when ``mask`` is given)."""
    distance = 1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)
    return distance.mean() if mask is None else masked_mean(distance, mask)


@register_method("cosine")
class Cosine(Method):
    """Cosine embedding loss between last-layer hidden states (or sentence embeddings).

    DistilBERT (Sanh et al., arXiv 1910.01108), Sec. 3: ``L_cos`` aligns the directions of the
    student and teacher hidden-state vectors, ``1 - cos(h_s, h_t)`` per token (``on: hidden``,
    same tokenizer needed). ``on: embedding`` applies it to sentence embeddings. A learned
    projection bridges different widths.
    """

    paper = "arXiv:1910.01108"
    summary = "1 - cosine between last hidden states (DistilBERT) or sentence embeddings"

    class Args(MethodArgs):
        on: Literal["hidden", "embedding"] = "hidden"

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"hidden_states" if self.args.on == "hidden" else "embedding"})

    @property
    def token_level(self) -> bool:  # type: ignore[override]
        return self.args.on == "hidden"

    def setup(self, pair: Pair) -> None:
        t, s = pair.teacher, pair.student
        if t is None:
            raise IncompatibleError("cosine needs a teacher")
        if self.args.on == "hidden":
            if not pair.same_tokenizer:
                raise IncompatibleError("cosine on hidden states needs teacher and student to tokenize alike")
            self.proj = width_projection(s.hidden_size, t.hidden_size)
        else:
            self.proj = width_projection(s.embedding_size, t.embedding_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if self.args.on == "embedding":
            return cosine_loss(
                self.proj(student.require("embedding", "cosine")), teacher.require("embedding", "cosine")
            )
        hs = student.require("hidden_states", "cosine")[-1]
        ht = teacher.require("hidden_states", "cosine")[-1]
        return cosine_loss(self.proj(hs), ht, student.attention_mask)
