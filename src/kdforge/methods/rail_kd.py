"""RAIL-KD: random intermediate teacher layers, redrawn every epoch, matched after projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import Views


def random_layers(teacher_layers: int, count: int, seed: int) -> list[int]:
    """``count`` distinct teacher layers from ``1..N-1``, sorted, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return sorted((torch.randperm(teacher_layers - 1, generator=generator)[:count] + 1).tolist())


def rail_loss(student_vector: Tensor, teacher_vector: Tensor) -> Tensor:
    """``|| s/||s|| - t/||t|| ||^2`` per sample, averaged over the batch."""
    return (F.normalize(student_vector, dim=-1) - F.normalize(teacher_vector, dim=-1)).pow(2).sum(-1).mean()


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@register_method("rail_kd")
class RAILKD(Method):
    """Random intermediate layer mapping: fresh teacher layers every epoch, concatenated and projected.

    Haidar et al., "RAIL-KD: RAndom Intermediate Layer Mapping for Knowledge Distillation",
    arXiv 2109.10164, Sec. 3: each epoch draws M-1 sorted teacher layers for the student's
    intermediate layers 1..M-1; mean-pooled layer outputs are concatenated (``concatenated``
    variant, or matched layer by layer), linearly projected into a common ``u``-dim space on each
    side, L2-normalized and compared by squared distance. Combine with ``kd`` and ``ce``
    (``L = l1 CE + l2 KD + l3 L_RAIL``). Any widths; padding is left out of the pooling.
    """

    needs = frozenset({"hidden_states"})
    paper = "arXiv:2109.10164"
    summary = "randomly drawn teacher layers per epoch, pooled, projected and matched"

    class Args(MethodArgs):
        projection_size: PositiveInt = 128
        concatenated: bool = True

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if s.num_layers < 2 or t.num_layers <= s.num_layers - 1:
            raise IncompatibleError("rail_kd needs a student of 2+ layers and a deeper teacher")
        self.count = s.num_layers - 1
        u = self.args.projection_size
        if self.args.concatenated:
            self.student_proj = nn.Linear(s.hidden_size * self.count, u)
            self.teacher_proj = nn.Linear(t.hidden_size * self.count, u)
        else:
            self.student_proj = nn.ModuleList(nn.Linear(s.hidden_size, u) for _ in range(self.count))
            self.teacher_proj = nn.ModuleList(nn.Linear(t.hidden_size, u) for _ in range(self.count))
        self.teacher_layers = t.num_layers

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        chosen = random_layers(self.teacher_layers, self.count, batch.seed * 7919 + batch.epoch)
        mask = student.attention_mask
        hs, ht = student.require("hidden_states", "rail_kd"), teacher.require("hidden_states", "rail_kd")
        s_vecs = [mean_pool(hs[j].float(), mask) for j in range(1, self.count + 1)]
        t_vecs = [mean_pool(ht[i].float(), mask) for i in chosen]
        if self.args.concatenated:
            return rail_loss(self.student_proj(torch.cat(s_vecs, -1)), self.teacher_proj(torch.cat(t_vecs, -1)))
        pairs = zip(self.student_proj, self.teacher_proj, s_vecs, t_vecs, strict=True)
        return sum(rail_loss(ps(s), pt(t)) for ps, pt, s, t in pairs)
