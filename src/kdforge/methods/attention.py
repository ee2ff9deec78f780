"""TinyBERT's attention-based distillation: MSE between per-head attention matrices."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.models.internals import attention_scores
from kdforge.models.views import Views


def attention_mse_loss(student_maps: list[Tensor], teacher_maps: list[Tensor], mask: Tensor) -> Tensor:
    """Sum over mapped layers of ``(1/h) sum_i MSE(A_i^S, A_i^T)`` over real query/key pairs.

    Maps are ``[B, heads, T, T]``; ``mask [B, T]`` marks real tokens.
    """
    pair_mask = (mask[:, None, :, None] * mask[:, None, None, :]).to(student_maps[0].dtype)
    total = student_maps[0].new_zeros(())
    for a_s, a_t in zip(student_maps, teacher_maps, strict=True):
        squared = (a_s - a_t.to(a_s.dtype)) ** 2 * pair_mask
        total = total + squared.sum() / (pair_mask.sum() * a_s.size(1)).clamp(min=1)
    return total


@register_method("attention")
class Attention(Method):
    """Match the student's self-attention matrices to the teacher's, head by head.

    TinyBERT (Jiao et al., arXiv 1909.10351), Eq. 3: ``L_attn = 1/h sum_i MSE(A_i^S, A_i^T)``.
    As the paper chooses, ``A`` is the unnormalized score matrix ``Q K^T / sqrt(d)``
    (``scores: logits``); ``scores: probs`` uses the softmax maps instead. Padded positions are
    left out (TinyBERT's code zeroes them). Needs equal head counts and the same tokenizer.
    """

    token_level = True
    paper = "arXiv:1909.10351"
    summary = "MSE between per-head attention score matrices of mapped layers"

    class Args(MethodArgs):
        layer_map: list[tuple[int, int]] | None = None
        scores: Literal["logits", "probs"] = "logits"

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"qkv" if self.args.scores == "logits" else "attentions"})

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if t.num_heads != s.num_heads:
            raise IncompatibleError(
                f"attention compares maps head by head, but the teacher has {t.num_heads} heads and the student "
                f"{s.num_heads}; use minilm-style relations or give the student {t.num_heads} heads"
            )
        layer_map = self.args.layer_map or default_map(t, s)
        if any(ti == 0 or si == 0 for ti, si in layer_map):
            raise IncompatibleError("attention: layer 0 is the embedding layer, which has no attention map")
        self.layer_map = check_map(layer_map, t.num_layers, s.num_layers, "attention")

    def _maps(self, views: Views, layers: list[int]) -> list[Tensor]:
        if self.args.scores == "probs":
            maps = views.require("attentions", "attention")
            return [maps[i - 1] for i in layers]
        q, k = views.require("queries", "attention"), views.require("keys", "attention")
        return [attention_scores(q[i - 1], k[i - 1]) for i in layers]

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        return attention_mse_loss(
            self._maps(student, [s for _, s in self.layer_map]),
            self._maps(teacher, [t for t, _ in self.layer_map]),
            student.attention_mask,
        )
