"""The RetriKT step-2 reward: hand-computed values of confidence, novelty and their sum."""

from __future__ import annotations

import pytest
import torch

from kdforge.knowledge import confidence_reward, jaccard, ngrams, novelty, reward


def test_ngrams_are_lowercased_unigrams_and_bigrams():
    assert ngrams("The film was great") == {
        "the",
        "film",
        "was",
        "great",
        ("the", "film"),
        ("film", "was"),
        ("was", "great"),
    }
    assert ngrams("") == frozenset()


def test_jaccard_by_hand():
    # 7 n-grams each; shared: the, film, was, (the, film), (film, was) -> 5 / (7 + 7 - 5)
    assert jaccard(ngrams("the film was great"), ngrams("the film was awful")) == pytest.approx(5 / 9)
    assert jaccard(ngrams("a b"), ngrams("a b")) == 1.0
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_confidence_is_the_probability_of_the_intended_label():
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    assert torch.allclose(confidence_reward(probs, [0, 0, 1]), torch.tensor([0.9, 0.3, 0.4]))


def test_novelty_against_references_and_the_batch():
    samples = ["the film was great", "the film was awful", "a dull plot"]
    got = novelty(samples, ["the film was great"])
    # a copy of a reference: 0; 5/9 like the reference and the first sample: 4/9; shares nothing: 1
    assert torch.allclose(got, torch.tensor([0.0, 4 / 9, 1.0]))
    assert torch.allclose(novelty(["a dull plot", "a dull plot"], []), torch.zeros(2))  # duplicates in a batch
    assert torch.allclose(novelty(["a dull plot"], []), torch.ones(1))


def test_reward_sums_confidence_and_weighted_novelty_and_zeroes_short_samples():
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    samples = ["the film was great", "the film was awful", "dull", ""]
    got = reward(probs, [0, 0, 1, 1], samples, ["the film was great"], diversity_weight=0.5)
    assert torch.allclose(got, torch.tensor([0.9 + 0.5 * 0.0, 0.3 + 0.5 * 4 / 9, 0.0, 0.0]))
    only_confidence = reward(probs, [0, 0, 1, 1], samples, ["the film was great"], diversity_weight=0.0)
    assert torch.allclose(only_confidence, torch.tensor([0.9, 0.3, 0.0, 0.0]))
