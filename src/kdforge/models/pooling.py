"""Sentence pooling as pure functions, matching sentence-transformers' Pooling modes."""

from __future__ import annotations

import torch
from torch import Tensor

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "lasttoken")


def pool(token_embeddings: Tensor, attention_mask: Tensor, mode: str) -> Tensor:
    """Reduce ``[B, T, H]`` token states to ``[B, H]`` sentence vectors, ignoring padding."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "cls":
        return token_embeddings[:, 0]
    if mode in ("mean", "mean_sqrt_len_tokens"):
        summed = (token_embeddings * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return summed / (counts if mode == "mean" else counts.sqrt())
    if mode == "max":
        masked = token_embeddings.masked_fill(mask == 0, torch.finfo(token_embeddings.dtype).min)
        return masked.max(dim=1).values
    if mode == "lasttoken":
        # Works for right padding: the last real token sits at length - 1.
        last = attention_mask.sum(dim=1).long() - 1
        return token_embeddings[torch.arange(token_embeddings.size(0)), last.clamp(min=0)]
    raise ValueError(f"unknown pooling mode {mode!r}; valid: {', '.join(POOLING_MODES)}")


def attention_pool(tokens: Tensor, attention_mask: Tensor, scorer: torch.nn.Module) -> Tensor:
    """``[B, T, H]`` to ``[B, H]``: a softmax over the real tokens of a learned score per token
    (``scorer``: ``H -> 1``) weights their states (seq_flow_lite's ``AttentionPooling``, pQRNN's head)."""
    scores = scorer(tokens).squeeze(-1).float()
    scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1).to(tokens.dtype)
    return (weights.unsqueeze(-1) * tokens).sum(dim=1)


def compared_pair(
    tokens: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None, scorer: torch.nn.Module
) -> Tensor:
    """``[B, T, H]`` to ``[B, 4 H]``: each text of a pair attention-pooled on its own (``u``: segment 0,
    ``v``: segment 1), then ``[u, v, |u - v|, u * v]``, InferSent's features for comparing two texts
    (Conneau et al., EMNLP 2017, Sec. 3.1). A row with no second segment compares its text with itself."""
    segment = torch.zeros_like(attention_mask) if token_type_ids is None else token_type_ids
    first = attention_mask * (segment == 0)
    second = attention_mask * (segment != 0)
    u = attention_pool(tokens, first, scorer)
    v = torch.where(second.sum(-1, keepdim=True) > 0, attention_pool(tokens, second, scorer), u)
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
