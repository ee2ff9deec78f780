"""How much the two texts of a pair share, token by token: the lexical signal a tiny student can read.

Pure functions of a tokenized pair (``input_ids``, ``attention_mask``, ``token_type_ids``), so any
model can compute them: the pQRNN feeds them to its encoder and classifier, and a retrieving student
(RetriKT, ``key: overlap``) searches its store by them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdforge.models.pooling import across_texts, pair_texts


def exact_match_flags(input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
    """``[B, T, 1]``: 1 where a real token's id also occurs among the real tokens of the other text of
    its pair (``token_type_ids``), else 0; all 0 for a single text. DIIN's exact-match feature (Gong et al.,
    ICLR 2018, Sec. 3.2), on word pieces: a hashed projection cannot tell that two positions hold the same
    word unless it is told, and shared words are most of what a tiny model can read of entailment."""
    return match_flags_of(input_ids, *pair_texts(attention_mask, token_type_ids))


def match_flags_of(input_ids: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """``exact_match_flags`` given the two texts' masks (``pair_texts``), for callers that have them."""
    same = input_ids[:, :, None] == input_ids[:, None, :]
    other = across_texts(first, second)  # all False for a single text
    return (same & other).to(torch.float32).amax(dim=-1, keepdim=True)


def overlap_shares(input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
    """``[B, 2]``: the share of each text's real tokens that ``exact_match_flags`` flags, the first text's
    then the second's (0 and 0 for a single text). The word-overlap features of the lexicalized NLI
    baseline (Bowman et al., EMNLP 2015, Sec. 3.2: the share of hypothesis words found in the premise),
    handed to the classifier as two numbers: a pQRNN given only the per-token flags memorises the
    training pairs' words before it learns to count, while this one number alone already separates RTE's
    entailments better than the pQRNN does."""
    first, second = pair_texts(attention_mask, token_type_ids)
    return flagged_shares(match_flags_of(input_ids, first, second), first, second)


def flagged_shares(flags: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """``overlap_shares`` from flags already computed: the flagged share of each text's real tokens."""
    shares = []
    for text in (first, second):
        tokens = text.to(flags.dtype)
        shares.append((flags.squeeze(-1) * tokens).sum(-1) / tokens.sum(-1).clamp_min(1.0))
    return torch.stack(shares, dim=-1)
