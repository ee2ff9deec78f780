"""Universal-KD: student layers match attention-combined teacher layers in a shared projected space."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor, nn

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import Views


def universal_loss(student_layers: list[Tensor], teacher_layers: list[Tensor]) -> Tensor:
    """``sum_i KL(softmax(t~_i) || softmax(s_i))`` with ``t~_i = sum_j softmax_j(s_i . t_j) t_j``.

    Inputs are projected ``[B, u]`` vectors, one per layer.
    """
    teacher = torch.stack(teacher_layers, dim=1)  # [B, N, u]
    total = student_layers[0].new_zeros(())
    for s in student_layers:
        weights = torch.softmax(torch.einsum("bu,bnu->bn", s, teacher), dim=-1)
        target = torch.einsum("bn,bnu->bu", weights, teacher)
        log_target = F.log_softmax(target, -1)
        total = total + F.kl_div(F.log_softmax(s, -1), log_target, log_target=True, reduction="batchmean")
    return total


@register_method("universal_kd")
class UniversalKD(Method):
    """Attention-based, output-grounded intermediate-layer distillation.

    Wu et al., "Universal-KD: Attention-based Output-Grounded Intermediate Layer Knowledge
    Distillation", EMNLP 2021 (aclanthology 2021.emnlp-main.603), Sec. 3: every intermediate
    layer of both models is mapped by its own learned projection into a common space, each
    student layer attends over all teacher layers (``eps_ij = softmax_j(s_i . t_j)``) and matches
    the combination by KL. Implemented as GKD does (per-layer bias-free projections to
    ``projection_size``, [CLS] or mean-pooled layers); the paper's pseudo-classifier space is the
    special case ``projection_size = num_labels``. Any widths.
    """

    needs = frozenset({"hidden_states"})
    paper = "ACL:2021.emnlp-main.603"
    summary = "each student layer vs an attention-weighted mix of projected teacher layers (KL)"

    class Args(MethodArgs):
        projection_size: PositiveInt | None = None
        pooling: Literal["cls", "mean"] = "cls"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        size = self.args.projection_size or s.hidden_size
        self.student_proj = nn.ModuleList(nn.Linear(s.hidden_size, size, bias=False) for _ in range(s.num_layers))
        self.teacher_proj = nn.ModuleList(nn.Linear(t.hidden_size, size, bias=False) for _ in range(t.num_layers))

    def _pool(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.args.pooling == "cls":
            return hidden[:, 0].float()
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float()

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        mask = student.attention_mask
        hs, ht = student.require("hidden_states", "universal_kd"), teacher.require("hidden_states", "universal_kd")
        s = [proj(self._pool(h, mask)) for proj, h in zip(self.student_proj, hs[1:], strict=True)]
        t = [proj(self._pool(h, mask)) for proj, h in zip(self.teacher_proj, ht[1:], strict=True)]
        return universal_loss(s, t)
