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


def attention_weights(tokens: Tensor, attention_mask: Tensor, scorer: torch.nn.Module) -> Tensor:
    """``[B, T]``: a softmax over the real tokens of a learned score per token (``scorer``: ``H -> 1``)."""
    scores = scorer(tokens).squeeze(-1).float()
    scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).to(tokens.dtype)


def attention_pool(tokens: Tensor, attention_mask: Tensor, scorer: torch.nn.Module) -> Tensor:
    """``[B, T, H]`` to ``[B, H]``: the token states weighted by ``attention_weights``
    (seq_flow_lite's ``AttentionPooling``, pQRNN's head)."""
    return (attention_weights(tokens, attention_mask, scorer).unsqueeze(-1) * tokens).sum(dim=1)


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


def aligned_pair(
    tokens: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None, scorer: torch.nn.Module
) -> Tensor:
    """``[B, T, H]`` to ``[B, 8 H]``: ``compared_pair``'s ``[u, v, |u - v|, u * v]``, then what each
    text's tokens find in the other text.

    Every token ``x_i`` of one text is softly aligned with the other text, ``x~_i = sum_j softmax_j(x_i .
    y_j) y_j`` (ESIM, Chen et al., ACL 2017, Eq. 12-13: dot-product attention across the pair), and
    compared with it, ``|x_i - x~_i|`` and ``x_i * x~_i`` (ESIM's Eq. 14-15 without the copies of
    ``x_i`` and ``x~_i``). Each text's comparisons are attention-pooled with its own weights: a
    hypothesis token that nothing in the premise matches leaves a large ``|x - x~|``. Pooled apart, two
    texts keep no trace of which words they share, and that overlap is most of what a model this small
    can learn about entailment. No parameters beyond the pooling's scorer. A row with no second
    segment aligns its text with itself.
    """
    segment = torch.zeros_like(attention_mask) if token_type_ids is None else token_type_ids
    real = attention_mask != 0
    first = real & (segment == 0)
    second = real & (segment != 0)
    paired = second.any(dim=-1)[:, None, None]
    across = (first[:, :, None] & second[:, None, :]) | (second[:, :, None] & first[:, None, :])
    allowed = (paired & across) | (~paired & real[:, :, None] & real[:, None, :])  # ONNX has no boolean Where
    scores = torch.bmm(tokens.float(), tokens.float().transpose(1, 2))
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    aligned = torch.bmm(torch.softmax(scores, dim=-1).to(tokens.dtype), tokens)
    compared = torch.cat([(tokens - aligned).abs(), tokens * aligned], dim=-1)
    u_weights = attention_weights(tokens, first.to(attention_mask.dtype), scorer)
    v_weights = torch.where(
        paired[:, :, 0], attention_weights(tokens, second.to(attention_mask.dtype), scorer), u_weights
    )
    found = [(weights.unsqueeze(-1) * compared).sum(dim=1) for weights in (u_weights, v_weights)]
    return torch.cat([compared_pair(tokens, attention_mask, token_type_ids, scorer), *found], dim=-1)
