"""SID: stacked internal distillation, the student's layers learn one more teacher layer per phase."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.relations import relation_kl, scaled_relation
from kdforge.models.views import Views


def active_layers(progress: float, student_layers: int) -> int:
    """Phase ``k`` (of ``M + 1`` equal phases) trains student layers ``1..k``; the last phase none."""
    phase = min(student_layers + 1, math.floor(round(progress * (student_layers + 1), 9)) + 1)
    return phase if phase <= student_layers else 0


def cls_cosine_loss(student_cls: Tensor, teacher_cls: Tensor) -> Tensor:
    return (1 - F.cosine_similarity(student_cls.float(), teacher_cls.float(), dim=-1)).mean()


@register_method("sid")
class SID(Method):
    """Stacked internal distillation of attention distributions and [CLS] states, layer by layer.

    Aguilar et al., "Knowledge Distillation from Internal Representations", arXiv 1910.03723,
    Sec. 3: internal losses ``KL(softmax(A^T) || softmax(A^S))`` on self-attention distributions and
    ``1 - cos(h^T_[CLS], h^S_[CLS])`` on mapped layers, trained *stacked*: training is split into
    M+1 equal phases; phase k distils student layers 1..k, and the last phase only the output
    (combine with ``kd`` for it: this method contributes 0 there). Needs equal head counts and
    widths.
    """

    needs = frozenset({"hidden_states", "qkv"})
    token_level = True
    paper = "arXiv:1910.03723"
    summary = "attention KL + [CLS] cosine, stacked one more layer per phase"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)  # a teacher, and one tokenization (attention maps are compared position by position)
        t, s = pair.teacher, pair.student
        assert t is not None
        if t.num_heads != s.num_heads or t.hidden_size != s.hidden_size:
            raise IncompatibleError(
                f"sid needs equal head counts and widths (teacher {t.num_heads}x{t.hidden_size}, "
                f"student {s.num_heads}x{s.hidden_size})"
            )
        self.layer_map = check_map(default_map(t, s), t.num_layers, s.num_layers, "sid")
        self.student_layers = s.num_layers

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        active = active_layers(batch.progress, self.student_layers)
        mask = student.attention_mask
        hs, ht = student.require("hidden_states", "sid"), teacher.require("hidden_states", "sid")
        total = hs[0].new_zeros((), dtype=torch.float)
        for t, s in self.layer_map[:active]:
            t_scores = scaled_relation(teacher.queries[t - 1], teacher.keys[t - 1], mask)  # type: ignore[index]
            s_scores = scaled_relation(student.queries[s - 1], student.keys[s - 1], mask)  # type: ignore[index]
            total = total + relation_kl(t_scores, s_scores, mask) + cls_cosine_loss(hs[s][:, 0], ht[t][:, 0])
        return total
