"""MGSKD: pair-wise and triplet-wise relations of tokens, spans and samples, layer by layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import default_map
from kdforge.models.views import Views

PAPER_HEADS = 64


def pair_relations(x: Tensor, heads: int) -> Tensor:
    """``phi_h(i, j) = x_i^h . x_j^h / sqrt(d / H)`` per relation head: ``[B, T, d]`` -> ``[B, H, T, T]``."""
    batch, length, width = x.shape
    split = x.float().view(batch, length, heads, width // heads).transpose(1, 2)
    return split @ split.transpose(-1, -2) / math.sqrt(width // heads)


def pair_loss(teacher: Tensor, student: Tensor, mask: Tensor, heads: int) -> Tensor:
    """Squared error of pair relations, summed over real pairs and heads, over their count."""
    valid = (mask[:, :, None] * mask[:, None, :]).bool()[:, None]  # [B, 1, T, T]
    error = (pair_relations(student, heads) - pair_relations(teacher, heads)).pow(2)
    return error.masked_select(valid).sum() / (valid.sum() * heads).clamp(min=1)


def select_triplets(teacher: Tensor, mask: Tensor, heads: int, k1: int, k2: int) -> tuple[Tensor, Tensor]:
    """The reference's triplet sampling, from the teacher: the ``k1`` most-attended anchors ``[B, k1]`` and,
    for each, its ``k2`` most-attended other positions ``[B, k1, k2]`` (softmaxed pair relations summed over heads).
    """
    length = teacher.size(1)
    k1, k2 = min(k1, length), min(k2, length)
    real = mask.bool()
    valid = (real[:, :, None] & real[:, None, :])[:, None]
    scores = pair_relations(teacher, heads).masked_fill(~valid, -1e4).softmax(-1) * valid  # [B, H, T, T]
    anchors = scores.sum((1, 2)).topk(k1, dim=-1).indices  # attention each position receives
    local = scores.sum(1) * ~torch.eye(length, dtype=torch.bool, device=teacher.device)
    neighbours = local.topk(k2, dim=-1).indices  # [B, T, k2]
    return anchors, neighbours.gather(1, anchors[..., None].expand(-1, -1, neighbours.size(-1)))


def triplet_angles(x: Tensor, anchors: Tensor, neighbours: Tensor) -> Tensor:
    """``psi(i, j, k) = <normalize(x_j - x_i), normalize(x_k - x_i)>`` for anchor i and neighbours j, k:
    ``[B, k1, k2, k2]`` (one head: the whole vector)."""
    x = x.float()
    width = x.size(-1)
    anchor = x.gather(1, anchors[..., None].expand(-1, -1, width))  # [B, k1, d]
    near = x.gather(1, neighbours.flatten(1)[..., None].expand(-1, -1, width)).view(*neighbours.shape, width)
    e = F.normalize(near - anchor[:, :, None], dim=-1)  # [B, k1, k2, d]
    return e @ e.transpose(-1, -2)


def triplet_loss(teacher: Tensor, student: Tensor, mask: Tensor, anchors: Tensor, neighbours: Tensor) -> Tensor:
    """Smooth-L1 between triplet angles over valid triplets (real, pairwise-distinct positions), over their count."""
    real = mask.bool()
    anchor_real = real.gather(1, anchors)  # [B, k1]
    near_real = real.gather(1, neighbours.flatten(1)).view(neighbours.shape)  # [B, k1, k2]
    near_ok = near_real & (neighbours != anchors[..., None])
    valid = anchor_real[:, :, None, None] & near_ok[..., :, None] & near_ok[..., None, :]
    valid &= neighbours[..., :, None] != neighbours[..., None, :]
    error = F.smooth_l1_loss(
        triplet_angles(student, anchors, neighbours), triplet_angles(teacher, anchors, neighbours), reduction="none"
    )
    return error.masked_select(valid).sum() / valid.sum().clamp(min=1)


def structure_loss(teacher: Tensor, student: Tensor, mask: Tensor, heads: int, k1: int, k2: int) -> Tensor:
    """Pair-wise plus triplet-wise relation loss over the units (tokens or spans) of each sample."""
    anchors, neighbours = select_triplets(teacher.detach(), mask, heads, k1, k2)
    return pair_loss(teacher, student, mask, heads) + triplet_loss(teacher, student, mask, anchors, neighbours)


def span_representations(x: Tensor, mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Mean of the real tokens in consecutive windows of ``size`` tokens: ``[B, S, d]`` and the span mask ``[B, S]``.

    The stand-in for the paper's chunker phrases (see ``MGSKD``).
    """
    batch, length, width = x.shape
    pad = (-length) % size
    x = F.pad(x.float(), (0, 0, 0, pad)).view(batch, -1, size, width)
    m = F.pad(mask.float(), (0, pad)).view(batch, -1, size)
    count = m.sum(-1)
    spans = (x * m[..., None]).sum(2) / count.clamp(min=1)[..., None]
    return spans, (count > 0).long()


def mean_pool(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.float()[..., None]
    return (x.float() * m).sum(1) / m.sum(1).clamp(min=1)


def sample_angles(x: Tensor, heads: int) -> Tensor:
    """Multi-head angles among samples, ``[N, d]`` -> ``[H, N, N, N]``: ``<e_ij, e_ik>``, ``e_ij = norm(x_j - x_i)``."""
    n, width = x.shape
    split = x.view(n, heads, width // heads).transpose(0, 1)  # [H, N, d/H]
    e = F.normalize(split[:, None, :, :] - split[:, :, None, :], dim=-1)  # [H, i, j, d/H]
    return e @ e.transpose(-1, -2)


def sample_loss(teacher: Tensor, student: Tensor, mask: Tensor, heads: int) -> Tensor:
    """Smooth-L1 between the multi-head angles of mean-pooled samples, averaged over all triplets."""
    t, s = sample_angles(mean_pool(teacher, mask), heads), sample_angles(mean_pool(student, mask), heads)
    return F.smooth_l1_loss(s, t)


def relation_heads(requested: int | None, *widths: int) -> int:
    """The paper's 64 relation heads when every width divides by 64; otherwise the largest common divisor up to 64."""
    if requested is not None:
        return requested
    common = math.gcd(*widths)
    return max(h for h in range(1, PAPER_HEADS + 1) if common % h == 0)


@register_method("mgskd")
class MGSKD(Method):
    """Multi-granularity structural KD: relations among tokens, spans and samples, layer by layer.

    Liu, Tao, Feng & Zhao, "Multi-Granularity Structural Knowledge Distillation for Language Model
    Compression", ACL 2022 (anthology 2022.acl-long.71), Sec. 3. The formulas follow the official code (LC97-pku/MGSKD
    ``src/loss.py``); the paper's equation numbers were not checked. Units at three granularities:
    tokens, spans (means of tokens) and samples (masked mean pools).

    - pair-wise relations ``phi_h(i, j) = x_i^h . x_j^h / sqrt(d/H)`` over ``H`` relation heads, matched
      by squared error over real pairs;
    - triplet-wise angles ``psi(i, j, k) = <norm(x_j - x_i), norm(x_k - x_i)>`` matched by smooth-L1 over
      the reference's sampled triplets (the teacher's ``k1`` most-attended anchors, each with its
      ``k2`` most-attended neighbours);
    - samples: multi-head triplet angles among the batch's mean-pooled samples, smooth-L1.

    Hierarchical distillation as the official code stratifies it: the first ``lower``
    representations (embeddings first) get the token- and span-level relations, the upper ones the
    sample-level angles; ``L = w_sample L_sample + w_token L_token + w_span L_span`` with (4, 1, 1).
    Representations: the embeddings plus every student block with the teacher block it was cut
    from (or ``m N / M``). Spans: the paper takes phrases from a chunker; this is an approximation,
    consecutive windows of ``span_size`` real tokens (3, about a short phrase). Relations have the
    same shape for both models, so widths may differ when both divide by the relation heads
    (default: the paper's 64, or the largest common divisor of the widths up to 64).
    """

    needs = frozenset({"hidden_states"})
    token_level = True
    paper = "ACL:2022.acl-long.71"
    summary = "pair and triplet relations of tokens, spans and samples (lower layers: token/span; upper: sample)"

    class Args(MethodArgs):
        relation_heads: PositiveInt | None = None
        k1: PositiveInt = 20
        k2: PositiveInt = 20
        lower: PositiveInt = 2
        span_size: PositiveInt = 3
        sample_weight: float = 4.0
        token_weight: float = 1.0
        span_weight: float = 1.0

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        self.heads = relation_heads(self.args.relation_heads, t.hidden_size, s.hidden_size)
        for who, width in (("teacher", t.hidden_size), ("student", s.hidden_size)):
            if width % self.heads:
                raise IncompatibleError(
                    f"mgskd: the {who} width {width} is not divisible by {self.heads} relation heads"
                )
        self.layer_map = default_map(t, s, include_embeddings=True)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs, ht = student.require("hidden_states", "mgskd"), teacher.require("hidden_states", "mgskd")
        mask = student.attention_mask
        a = self.args
        total = hs[0].new_zeros((), dtype=torch.float)
        for index, (t_layer, s_layer) in enumerate(self.layer_map):
            t, s = ht[t_layer], hs[s_layer]
            if index >= a.lower:
                total = total + a.sample_weight * sample_loss(t, s, mask, self.heads)
                continue
            if a.token_weight:
                total = total + a.token_weight * structure_loss(t, s, mask, self.heads, a.k1, a.k2)
            if a.span_weight:
                t_spans, span_mask = span_representations(t, mask, a.span_size)
                s_spans, _ = span_representations(s, mask, a.span_size)
                total = total + a.span_weight * structure_loss(t_spans, s_spans, span_mask, self.heads, a.k1, a.k2)
        return total
