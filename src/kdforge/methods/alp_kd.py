"""ALP-KD: each student layer learns from an attention-weighted mix of all teacher layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.models.views import Views


def alp_loss(student_layers: list[Tensor], teacher_layers: list[Tensor]) -> Tensor:
    """``sum_i MSE(h^S_i, sum_j eps_ij h^T_j)`` with ``eps_i = softmax_j(h^S_i . h^T_j)``.

    Inputs are ``[B, D]`` vectors (the [CLS] state of each layer).
    """
    teacher = torch.stack(teacher_layers, dim=1).float()  # [B, N, D]
    total = student_layers[0].new_zeros((), dtype=torch.float)
    for h_s in student_layers:
        weights = torch.softmax(torch.einsum("bd,bnd->bn", h_s.float(), teacher), dim=-1)
        target = torch.einsum("bn,bnd->bd", weights, teacher)
        total = total + F.mse_loss(h_s.float(), target)
    return total


@register_method("alp_kd")
class ALPKD(Method):
    """Attention-based layer projection: no fixed layer map, every teacher layer contributes.

    Passban et al., "ALP-KD: Attention-Based Layer Projection for Knowledge Distillation",
    arXiv 2012.14022, Sec. 3: ``eps_ij = exp(h^S_i . h^T_j) / sum_k exp(h^S_i . h^T_k)``,
    ``f^T_i = sum_j eps_ij h^T_j``, ``L_ALP = sum_i MSE(h^S_i, f^T_i)`` over [CLS] states of student
    layers 1..M and teacher layers 1..N. Combine with ``kd`` and ``ce`` as the paper does. Needs
    equal widths.
    """

    needs = frozenset({"hidden_states"})
    paper = "arXiv:2012.14022"
    summary = "[CLS] of each student layer vs an attention-weighted mix of all teacher layers"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if t.hidden_size != s.hidden_size:
            raise IncompatibleError(f"alp_kd needs equal widths (teacher {t.hidden_size}, student {s.hidden_size})")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs, ht = student.require("hidden_states", "alp_kd"), teacher.require("hidden_states", "alp_kd")
        return alp_loss([h[:, 0] for h in hs[1:]], [h[:, 0] for h in ht[1:]])
