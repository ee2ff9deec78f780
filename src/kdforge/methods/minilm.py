"""MiniLM: deep self-attention distillation of the last layer (attention + value relation)."""

from __future__ import annotations

from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.relations import relation_kl, scaled_relation
from kdforge.models.views import Views


def minilm_loss(
    teacher_qkv: tuple[Tensor, Tensor, Tensor], student_qkv: tuple[Tensor, Tensor, Tensor], mask: Tensor
) -> tuple[Tensor, Tensor]:
    """``(L_AT, L_VR)`` from one layer's per-head ``(Q, K, V)`` of each model, ``[B, H, T, d]``.

    ``L_AT`` compares ``softmax(Q K^T / sqrt(d_k))``, ``L_VR`` compares ``softmax(V V^T / sqrt(d_k))``,
    each by the KL of teacher to student, averaged over heads and real query tokens.
    """
    (tq, tk, tv), (sq, sk, sv) = teacher_qkv, student_qkv
    attention = relation_kl(scaled_relation(tq, tk, mask), scaled_relation(sq, sk, mask), mask)
    values = relation_kl(scaled_relation(tv, tv, mask), scaled_relation(sv, sv, mask), mask)
    return attention, values


@register_method("minilm")
class MiniLM(Method):
    """Transfer the last layer's self-attention distributions and value relations.

    Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
    Pre-Trained Transformers", arXiv 2002.10957, Eq. 5 ``L_AT = 1/(A_h |x|) sum_a sum_t
    KL(A^T_{L,a,t} || A^S_{M,a,t})`` and Eq. 7 ``L_VR`` on ``softmax(V V^T / sqrt(d_k))``;
    ``L = L_AT + L_VR``. Teacher layer L and student layer M are the last ones. Needs equal head
    counts; widths and depths may differ. Padded query rows and keys are left out.
    """

    needs = frozenset({"qkv"})
    token_level = True
    paper = "arXiv:2002.10957"
    summary = "KL of last-layer attention distributions and value relations (needs equal head counts)"

    class Args(MethodArgs):
        attention_weight: float = 1.0
        value_weight: float = 1.0

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if t.num_heads != s.num_heads:
            raise IncompatibleError(
                f"minilm compares attention head by head, but the teacher has {t.num_heads} heads and the student "
                f"{s.num_heads}; use minilmv2 (relation heads) instead"
            )

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        def last(views: Views) -> tuple[Tensor, Tensor, Tensor]:
            return tuple(views.require(n, "minilm")[-1] for n in ("queries", "keys", "values"))  # type: ignore[return-value]

        attention, values = minilm_loss(last(teacher), last(student), student.attention_mask)
        return self.args.attention_weight * attention + self.args.value_weight * values
