"""LRC-BERT: contrastive distillation of intermediate representations (COS-NCE with batch negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.projection import width_projection
from kdforge.models.views import Views


def cosine_distances(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """``g(s_i, t_j) = 1 - cos`` averaged over real token positions, for all pairs: ``[B, B]``."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    cos = torch.einsum("itd,jtd->ijt", s, t)  # position t of sample i vs the same position of sample j
    both = (mask[:, None, :] * mask[None, :, :]).float()
    return 1 - (cos * both).sum(-1) / both.sum(-1).clamp(min=1)


def cos_nce(distances: Tensor) -> Tensor:
    """``g(s_i, t_i) + 1 - 1/(2K) sum_{j != i} g(s_i, t_j)``: pull the own teacher close, push others away."""
    batch = distances.size(0)
    positive = distances.diagonal()
    negatives = (distances.sum(-1) - positive) / (2 * max(batch - 1, 1))
    return (positive + 1 - negatives).mean()


@register_method("lrc_bert")
class LRCBERT(Method):
    """COS-NCE between each mapped student layer and the teacher's, other samples as negatives.

    Fu et al., "LRC-BERT: Latent-representation Contrastive Knowledge Distillation for Natural
    Language Understanding", arXiv 2012.07335, Eq. 3-4: with ``g(x, y) = 1 - cos(x, y)`` in [0, 2],
    ``L_i = g(h^S_i W, h^T_i) + 1 - 1/(2K) sum_{j in negatives} g(h^S_i W, h^T_j)`` summed over the
    layer mapping, the K negatives being the other samples of the batch. ``W`` is learned when
    widths differ. The paper's gradient-perturbation pass is not part of this loss.
    """

    needs = frozenset({"hidden_states"})
    token_level = True
    paper = "arXiv:2012.07335"
    summary = "contrastive COS-NCE on mapped hidden states with in-batch negatives"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        self.layer_map = check_map(default_map(t, s), t.num_layers, s.num_layers, "lrc_bert")
        self.proj = width_projection(s.hidden_size, t.hidden_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs, ht = student.require("hidden_states", "lrc_bert"), teacher.require("hidden_states", "lrc_bert")
        mask = student.attention_mask
        return sum(cos_nce(cosine_distances(self.proj(hs[s]), ht[t], mask)) for t, s in self.layer_map)
