"""Relation matrices between token vectors, and the KL between two of them, over real tokens only.

Shared by the attention-relation methods (MiniLM, MiniLMv2, SID, MobileBERT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def key_mask(mask: Tensor) -> Tensor:
    """``[B, T]`` real-token mask -> additive ``[B, 1, 1, T]`` mask (``-inf`` on padded keys)."""
    return torch.zeros_like(mask, dtype=torch.float).masked_fill(mask == 0, float("-inf"))[:, None, None, :]


def scaled_relation(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """``a b^T / sqrt(d)`` per head, ``[B, H, T, T]``, with padded keys at ``-inf`` (log-space scores)."""
    return torch.matmul(a.float(), b.float().transpose(-1, -2)) / a.size(-1) ** 0.5 + key_mask(mask)


def relation_kl(teacher_scores: Tensor, student_scores: Tensor, mask: Tensor) -> Tensor:
    """``1/(H |x|) sum_h sum_t KL(softmax(teacher[h, t]) || softmax(student[h, t]))`` per sample, batch mean.

    Scores are ``[B, H, T, T]`` logits with padded keys at ``-inf``; padded query rows are left out.
    """
    log_t = F.log_softmax(teacher_scores, dim=-1)
    log_s = F.log_softmax(student_scores, dim=-1)
    p_t = log_t.exp()
    # 0 * log 0 terms (padded keys) are 0, not nan
    kl_rows = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t)).sum(-1)  # [B, H, T]
    rows = mask.to(kl_rows.dtype)[:, None, :]
    per_sample = (kl_rows * rows).sum((-1, -2)) / (rows.sum(-1).squeeze(-1) * kl_rows.size(1)).clamp(min=1)
    return per_sample.mean()


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[B, T, D]`` (or ``[B, H0, T, d0]`` merged first) -> ``[B, heads, T, D / heads]``."""
    if x.dim() == 4:
        x = x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)
