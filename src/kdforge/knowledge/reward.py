"""The reward of RetriKT step 2: confident in its own label, and not a copy.

RetriKT (arXiv 2310.15594) refines the soft prompt with PPO under a reward that asks two things
of a generated sample x_i written for label y_i:

(i) quality: the teacher itself, classifying x_i, gives y_i high probability
    (a sample the teacher labels otherwise, or hesitates on, teaches the student little);
(ii) diversity: x_i is not a near-duplicate of the training texts (a store of paraphrased
    training texts adds nothing) nor of the other samples of its batch (mode collapse).

With ``p_i`` the teacher's soft label of x_i, ``S(x)`` the set of lower-cased word unigrams
and bigrams of x, and Jaccard ``J(A, B) = |A & B| / |A | B|`` (0 when both are empty):

    confidence_i = p_i[y_i]                                          (1/C is chance)
    novelty_i    = 1 - max( max_r J(S(x_i), S(r)), max_{j != i} J(S(x_i), S(x_j)) )
    reward_i     = confidence_i + w * novelty_i,   and 0 when x_i has fewer than ``min_words`` words,

where r runs over the reference (training) texts and an empty max is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Weight w of novelty against confidence; both lie in [0, 1].
DIVERSITY_WEIGHT = 0.5
#: Samples shorter than this (in words) are worthless to the store and get reward 0.
MIN_WORDS = 2


def ngrams(text: str) -> frozenset:
    """``S(x)``: the lower-cased word unigrams and bigrams of ``text``."""
    words = text.lower().split()
    return frozenset(words) | frozenset(zip(words, words[1:], strict=False))


def jaccard(a: frozenset, b: frozenset) -> float:
    """``|a & b| / |a | b|``, and 0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def confidence_reward(probs: Tensor, intended: Tensor | Sequence[int]) -> Tensor:
    """``probs[i, intended[i]]``: the teacher's probability of the label each sample was written for."""
    intended = torch.as_tensor(intended, dtype=torch.long, device=probs.device)
    return probs[torch.arange(len(intended), device=probs.device), intended]


def novelty(samples: Sequence[str], references: Sequence[str]) -> Tensor:
    """``1 - max`` Jaccard similarity to the references and to the other samples (see module doc)."""
    grams = [ngrams(text) for text in samples]
    refs = [ngrams(text) for text in references]
    out = []
    for i, own in enumerate(grams):
        others = refs + grams[:i] + grams[i + 1 :]
        out.append(1.0 - max((jaccard(own, other) for other in others), default=0.0))
    return torch.tensor(out, dtype=torch.float32)


def reward(
    probs: Tensor,
    intended: Tensor | Sequence[int],
    samples: Sequence[str],
    references: Sequence[str],
    diversity_weight: float = DIVERSITY_WEIGHT,
    min_words: int = MIN_WORDS,
) -> Tensor:
    """``confidence + diversity_weight * novelty``, zeroed for samples under ``min_words`` words."""
    total = confidence_reward(probs, intended).float().cpu() + diversity_weight * novelty(samples, references)
    long_enough = torch.tensor([len(text.split()) >= min_words for text in samples])
    return torch.where(long_enough, total, torch.zeros_like(total))
