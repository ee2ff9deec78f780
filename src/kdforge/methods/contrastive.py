"""In-batch contrastive objectives over sentence embeddings (shared by SimCSE, Mirror-BERT, RankCSE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``S_ij = cos(a_i, b_j)``, ``[N, N]``."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def info_nce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """``-1/N sum_i log(exp(S_ii / tau) / sum_j exp(S_ij / tau))`` with ``S = cos(view1, view2)``."""
    logits = cosine_matrix(view1, view2) / temperature
    return F.cross_entropy(logits, torch.arange(logits.size(0), device=logits.device))


def nt_xent(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """Symmetric NT-Xent over the 2N embeddings: each is pulled to its other view, pushed from all the rest."""
    both = F.normalize(torch.cat([view1, view2]).float(), dim=-1)
    n = view1.size(0)
    logits = both @ both.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=logits.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(logits.device)
    return F.cross_entropy(logits, targets)
