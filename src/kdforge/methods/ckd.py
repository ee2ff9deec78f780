"""CKD: distil linguistic context as word relations (within a layer) and layer-transforming relations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.models.views import Views


def _distance_kl(teacher: Tensor, student: Tensor, valid: Tensor) -> Tensor:
    """KL between row-softmaxed cosine-similarity matrices ``[..., n, n]``; ``valid`` marks usable entries."""

    def cos(x: Tensor) -> Tensor:
        x = F.normalize(x.float(), dim=-1)
        return (x @ x.transpose(-1, -2)).masked_fill(~valid, float("-inf"))

    log_t, log_s = F.log_softmax(cos(teacher), -1), F.log_softmax(cos(student), -1)
    p_t = log_t.exp()
    kl = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t)).sum(-1)
    rows = valid.any(-1)
    return kl[rows].sum() / rows.sum().clamp(min=1)


def _angles(x: Tensor) -> Tensor:
    """``psi(i, j, k) = <norm(x_i - x_j), norm(x_i - x_k)>`` for all triples of the last-but-one axis."""
    diff = F.normalize(x.unsqueeze(-2) - x.unsqueeze(-3), dim=-1)  # [..., i, j, d] = x_i - x_j
    return diff @ diff.transpose(-1, -2)  # [..., i, j, k]


def word_relation_distance(teacher: Tensor, student: Tensor, mask: Tensor) -> Tensor:
    """WR-distance: per layer, token-to-token cosine relations (diagonal and padding excluded)."""
    real = mask.bool()
    valid = real[:, :, None] & real[:, None, :] & ~torch.eye(mask.size(1), dtype=torch.bool, device=mask.device)
    return _distance_kl(teacher, student, valid)


def _windows(x: Tensor, half: int) -> Tensor:
    """``[B, T, ...]`` -> ``[B, T, 2*half+1, ...]``: the neighbours of each position (zero-padded at the ends)."""
    padded = F.pad(x, (0, 0) * (x.dim() - 2) + (half, half)) if x.dim() > 2 else F.pad(x, (half, half))
    return padded.unfold(1, 2 * half + 1, 1).movedim(-1, 2)


def word_relation_angle(teacher: Tensor, student: Tensor, mask: Tensor, window: int) -> Tensor:
    """WR-angle: for each token i, angles ``<norm(x_i - x_j), norm(x_i - x_k)>`` over j, k in its window."""
    half = window // 2
    m = mask.float()
    neighbours = _windows(m, half)  # [B, T, W]
    valid = (m[:, :, None, None] * neighbours[:, :, :, None] * neighbours[:, :, None, :]).bool()
    centre = torch.zeros(2 * half + 1, dtype=torch.bool, device=mask.device)
    centre[half] = True
    valid &= ~(centre[:, None] | centre[None, :])  # the token itself gives no direction

    def angles(x: Tensor) -> Tensor:
        x = x.float()
        diff = F.normalize(x.unsqueeze(2) - _windows(x, half), dim=-1)  # [B, T, W, d]
        return diff @ diff.transpose(-1, -2)  # [B, T, W, W]

    error = (angles(student) - angles(teacher)).pow(2)
    return error[valid].sum() / valid.sum().clamp(min=1)


def layer_relation_distance(teacher: list[Tensor], student: list[Tensor], mask: Tensor) -> Tensor:
    """LTR-distance: per token, cosine relations between its vectors across the selected layers."""
    t, s = torch.stack(teacher, 2), torch.stack(student, 2)  # [B, T, L, d]
    layers = t.size(2)
    eye = torch.eye(layers, dtype=torch.bool, device=mask.device)
    valid = mask.bool()[:, :, None, None] & ~eye
    return _distance_kl(t, s, valid)


def layer_relation_angle(teacher: list[Tensor], student: list[Tensor], mask: Tensor) -> Tensor:
    """LTR-angle: per token, angles among its vectors across the selected layers."""
    t, s = torch.stack(teacher, 2).float(), torch.stack(student, 2).float()
    error = (_angles(s) - _angles(t)).pow(2).mean((-1, -2, -3))  # [B, T]
    return (error * mask).sum() / mask.sum().clamp(min=1)


@register_method("ckd")
class CKD(Method):
    """Context distillation: word relations inside layers, layer-transforming relations across them.

    Park et al., "Distilling Linguistic Context for Language Model Compression", arXiv 2109.08359,
    Sec. 3: word relation (WR) and layer-transforming relation (LTR), each as a distance term
    (KL between softmaxed cosine-similarity relations) and an angle term (squared error of
    triplet angles ``<(x_i - x_j)/||.||, (x_i - x_k)/||.||>``; WR angles within a local window).
    ``L = w_wrd WR_dist + w_wra WR_angle + w_ltrd LTR_dist + w_ltra LTR_angle``; the defaults are the
    paper's best setting (1, 10, 1, 10). Layers: embeddings plus the mapped blocks. Relations
    compare only token-to-token structure, so widths and head counts may differ.
    """

    needs = frozenset({"hidden_states"})
    token_level = True
    paper = "arXiv:2109.08359"
    summary = "word-relation and layer-transforming-relation distances and angles"

    class Args(MethodArgs):
        window: PositiveInt = 21
        wr_distance: float = 1.0
        wr_angle: float = 10.0
        ltr_distance: float = 1.0
        ltr_angle: float = 10.0

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        self.layer_map = check_map(default_map(t, s, include_embeddings=True), t.num_layers, s.num_layers, "ckd")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs, ht = student.require("hidden_states", "ckd"), teacher.require("hidden_states", "ckd")
        mask = student.attention_mask
        s_layers = [hs[j] for _, j in self.layer_map]
        t_layers = [ht[i] for i, _ in self.layer_map]
        a = self.args
        total = hs[0].new_zeros((), dtype=torch.float)
        for t, s in zip(t_layers, s_layers, strict=True):
            if a.wr_distance:
                total = total + a.wr_distance * word_relation_distance(t, s, mask)
            if a.wr_angle:
                total = total + a.wr_angle * word_relation_angle(t, s, mask, a.window)
        if a.ltr_distance:
            total = total + a.ltr_distance * layer_relation_distance(t_layers, s_layers, mask)
        if a.ltr_angle:
            total = total + a.ltr_angle * layer_relation_angle(t_layers, s_layers, mask)
        return total
