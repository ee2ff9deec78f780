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
    return _weighted(attention_weights(tokens, attention_mask, scorer), tokens)


def pair_texts(attention_mask: Tensor, token_type_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    """Boolean ``[B, T]`` masks of the real tokens of a pair's first text (segment 0) and second."""
    segment = torch.zeros_like(attention_mask) if token_type_ids is None else token_type_ids
    real = attention_mask != 0
    return real & (segment == 0), real & (segment != 0)


def across_texts(first: Tensor, second: Tensor) -> Tensor:
    """Boolean ``[B, T, T]``: token ``i`` and token ``j`` are real and in different texts of the pair."""
    return (first[:, :, None] & second[:, None, :]) | (second[:, :, None] & first[:, None, :])


def text_weights(tokens: Tensor, first: Tensor, second: Tensor, scorer: torch.nn.Module) -> tuple[Tensor, Tensor]:
    """Each text's ``attention_weights``; a row with no second text uses the first's for both."""
    u = attention_weights(tokens, first, scorer)
    return u, torch.where(second.any(dim=-1, keepdim=True), attention_weights(tokens, second, scorer), u)


def _weighted(weights: Tensor, rows: Tensor) -> Tensor:
    return (weights.unsqueeze(-1) * rows).sum(dim=1)


def _infersent(u: Tensor, v: Tensor) -> Tensor:
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def compared_pair(
    tokens: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None, scorer: torch.nn.Module
) -> Tensor:
    """``[B, T, H]`` to ``[B, 4 H]``: each text of a pair attention-pooled on its own (``u``: segment 0,
    ``v``: segment 1), then ``[u, v, |u - v|, u * v]``, InferSent's features for comparing two texts
    (Conneau et al., EMNLP 2017, Sec. 3.1). A row with no second segment compares its text with itself."""
    u_weights, v_weights = text_weights(tokens, *pair_texts(attention_mask, token_type_ids), scorer)
    return _infersent(_weighted(u_weights, tokens), _weighted(v_weights, tokens))


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
    first, second = pair_texts(attention_mask, token_type_ids)
    real = first | second
    paired = second.any(dim=-1)[:, None, None]
    itself = real[:, :, None] & real[:, None, :]
    allowed = (paired & across_texts(first, second)) | (~paired & itself)  # ONNX has no boolean Where
    scores = torch.bmm(tokens.float(), tokens.float().transpose(1, 2))
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    aligned = torch.bmm(torch.softmax(scores, dim=-1).to(tokens.dtype), tokens)
    compared = torch.cat([(tokens - aligned).abs(), tokens * aligned], dim=-1)
    u_weights, v_weights = text_weights(tokens, first, second, scorer)
    u, v = _weighted(u_weights, tokens), _weighted(v_weights, tokens)
    return torch.cat([_infersent(u, v), _weighted(u_weights, compared), _weighted(v_weights, compared)], dim=-1)
