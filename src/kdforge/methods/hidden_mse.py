"""TinyBERT's hidden-state distillation: MSE between mapped layers, projected when widths differ."""

from __future__ import annotations

from pydantic import field_validator
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.projection import width_projection
from kdforge.methods.reduce import masked_mean
from kdforge.models.views import Views


def hidden_mse_loss(
    student_hidden: list[Tensor], teacher_hidden: list[Tensor], mask: Tensor, project=lambda x: x
) -> Tensor:
    """Sum over mapped layers of ``MSE(H_S W_h, H_T)``, averaged over real tokens and features."""
    total = student_hidden[0].new_zeros(())
    for hs, ht in zip(student_hidden, teacher_hidden, strict=True):
        total = total + masked_mean((project(hs) - ht.to(hs.dtype)) ** 2, mask)
    return total


@register_method("hidden_mse")
class HiddenMSE(Method):
    """Match student hidden states to the teacher's mapped layers.

    TinyBERT (Jiao et al., arXiv 1909.10351), Eq. 2: ``L_hidn = MSE(H^S W_h, H^T)`` with a
    learned ``W_h`` when the widths differ, summed over the layer mapping ``n = g(m)``: by
    default the blocks a student cut from the teacher was copied from, else TinyBERT's
    uniform ``g(m) = m N / M``; ``layer_map: [[teacher, student], ...]`` sets it (hidden-state
    numbering, 0 = embeddings). Padding positions are left out of the mean.
    Needs both models to tokenize alike.
    """

    needs = frozenset({"hidden_states"})
    token_level = True
    paper = "arXiv:1909.10351"
    summary = "MSE between mapped hidden states, learned projection when widths differ"

    class Args(MethodArgs):
        layer_map: list[tuple[int, int]] | None = None
        include_embeddings: bool = False

        @field_validator("layer_map")
        @classmethod
        def _not_empty(cls, value):
            if value is not None and not value:
                raise ValueError("layer_map is empty")
            return value

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        self.layer_map = check_map(
            self.args.layer_map or default_map(t, s, self.args.include_embeddings),
            t.num_layers,
            s.num_layers,
            "hidden_mse",
        )
        self.proj = width_projection(s.hidden_size, t.hidden_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs = student.require("hidden_states", "hidden_mse")
        ht = teacher.require("hidden_states", "hidden_mse")
        return hidden_mse_loss(
            [hs[s] for _, s in self.layer_map], [ht[t] for t, _ in self.layer_map], student.attention_mask, self.proj
        )
