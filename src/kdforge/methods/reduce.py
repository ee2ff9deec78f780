"""Reductions over real (non-padding) token positions."""

from __future__ import annotations

from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values [B, T, ...]`` over positions where ``mask [B, T]`` is 1, and over the rest."""
    weights = mask.to(values.dtype)
    while weights.dim() < values.dim():
        weights = weights.unsqueeze(-1)
    per_position = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * weights).sum() / (weights.sum() * per_position).clamp(min=1)
