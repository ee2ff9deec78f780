"""MiniLMv2: multi-head self-attention relation distillation (Q-Q, K-K, V-V) with relation heads."""

from __future__ import annotations

from pydantic import PositiveInt
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.relations import relation_kl, scaled_relation, split_heads
from kdforge.models.views import Views

RELATIONS = ("queries", "keys", "values")


def minilmv2_loss(
    teacher: tuple[Tensor, Tensor, Tensor], student: tuple[Tensor, Tensor, Tensor], mask: Tensor, relation_heads: int
) -> list[Tensor]:
    """``[L_QQ, L_KK, L_VV]`` for one teacher layer and one student layer.

    Each of ``Q, K, V`` (per attention head, ``[B, H, T, d]``) is concatenated over heads and
    re-split into ``relation_heads`` heads of width ``d_r``; the relation is
    ``softmax(A_r A_r^T / sqrt(d_r))`` and the loss the KL of teacher to student, averaged over
    relation heads and real tokens.
    """
    losses = []
    for t, s in zip(teacher, student, strict=True):
        t, s = split_heads(t, relation_heads), split_heads(s, relation_heads)
        losses.append(relation_kl(scaled_relation(t, t, mask), scaled_relation(s, s, mask), mask))
    return losses


@register_method("minilmv2")
class MiniLMv2(Method):
    """Distil Q-Q, K-K and V-V self-attention relations of one teacher layer into the student's last.

    Wang et al., "MiniLMv2: Multi-Head Self-Attention Relation Distillation for Compressing
    Pretrained Transformers", arXiv 2012.15828, Sec. 3: ``R_{ij} = softmax(A_i A_j^T / sqrt(d_r))``
    over relation heads, ``L = sum_{(i,j) in {QQ, KK, VV}} 1/(A_r |x|) sum_a sum_t KL(R^T || R^S)``.
    Relation heads decouple the two models' head counts: any widths divisible by
    ``relation_heads`` work (the paper uses 48 for base-size teachers, 64 for large ones).
    ``teacher_layer`` picks the teacher layer (1-based, negative counts from the end; the paper
    uses an upper-middle layer for large teachers, the last for base ones).
    """

    needs = frozenset({"qkv"})
    token_level = True
    paper = "arXiv:2012.15828"
    summary = "KL of Q-Q, K-K, V-V relations with relation heads (any head counts)"

    class Args(MethodArgs):
        relation_heads: PositiveInt = 48
        teacher_layer: int = -1
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        heads = self.args.relation_heads
        for who, width in (("teacher", t.hidden_size), ("student", s.hidden_size)):
            if width % heads:
                raise IncompatibleError(
                    f"minilmv2: the {who}'s width {width} is not divisible by relation_heads={heads}; "
                    f"choose a common divisor of {t.hidden_size} and {s.hidden_size}"
                )
        layer = self.args.teacher_layer
        if not (1 <= layer <= t.num_layers or -t.num_layers <= layer <= -1):
            raise IncompatibleError(
                f"minilmv2: teacher_layer {layer} is not in 1..{t.num_layers} (or -1..-{t.num_layers})"
            )
        self.relation_layer = layer - 1 if layer > 0 else layer

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        t = tuple(teacher.require(n, "minilmv2")[self.relation_layer] for n in RELATIONS)
        s = tuple(student.require(n, "minilmv2")[-1] for n in RELATIONS)
        losses = minilmv2_loss(t, s, student.attention_mask, self.args.relation_heads)  # type: ignore[arg-type]
        return sum(w * loss for w, loss in zip(self.args.weights, losses, strict=True))
