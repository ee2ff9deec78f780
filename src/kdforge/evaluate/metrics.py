"""Quality metrics as pure functions of arrays, all reported x100 as the GLUE papers do."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from seqeval import metrics as seqeval
from sklearn.metrics import f1_score, matthews_corrcoef


def spearman(predicted, gold) -> float:
    return float(spearmanr(np.asarray(predicted), np.asarray(gold)).correlation * 100)


def pearson(predicted, gold) -> float:
    return float(pearsonr(np.asarray(predicted), np.asarray(gold))[0] * 100)


def cosine_scores(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).numpy()


def classification_metrics(predicted, gold, num_labels: int) -> dict[str, float]:
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    average = "binary" if num_labels == 2 else "macro"
    return {
        "accuracy": float((predicted == gold).mean() * 100),
        "f1": float(f1_score(gold, predicted, average=average, zero_division=0) * 100),
        "mcc": float(matthews_corrcoef(gold, predicted) * 100),
    }


def similarity_fidelity(teacher: torch.Tensor, student: torch.Tensor) -> float:
    """Spearman x100 between the teacher's and the student's pairwise cosine similarities.

    Needs no labels: it says how well the student reproduces the teacher's geometry on a set
    of sentences (all pairs of the set).
    """

    def pairwise(x: torch.Tensor) -> np.ndarray:
        x = torch.nn.functional.normalize(x.float(), dim=-1)
        sims = x @ x.T
        rows, cols = torch.triu_indices(len(x), len(x), offset=1)
        return sims[rows, cols].numpy()

    return spearman(pairwise(student), pairwise(teacher))


def _top_relevance(scores, relevance, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of the top ``k`` candidates by score (ties keep list order), and of the whole list."""
    relevance = np.asarray(relevance, dtype=float)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    return relevance[order], relevance


def mrr_at_k(scores, relevance, k: int = 10) -> float:
    """``1 / rank`` of the first relevant candidate among the top ``k``, 0 if none (one query)."""
    top, _ = _top_relevance(scores, relevance, k)
    hits = np.flatnonzero(top > 0)
    return float(1.0 / (hits[0] + 1)) if hits.size else 0.0


def ndcg_at_k(scores, relevance, k: int = 10) -> float:
    """``DCG@k / ideal DCG@k`` with linear gain, ``DCG = sum_i rel_i / log2(i + 1)`` (trec_eval, BEIR)."""
    top, relevance = _top_relevance(scores, relevance, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(relevance)[::-1][:k]
    best = float((ideal * discounts[: len(ideal)]).sum())
    return float((top * discounts[: len(top)]).sum()) / best if best > 0 else 0.0


def span_metrics(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Entity-span precision, recall and F1 (micro) as seqeval computes them, and per-word accuracy, x100.

    A span counts only when both its boundaries and its type match (the CoNLL evaluation);
    seqeval's default mode also reads an ``I-`` tag that follows no ``B-`` as the start of a span.
    """
    return {
        "f1": float(seqeval.f1_score(gold, predicted, zero_division=0) * 100),
        "precision": float(seqeval.precision_score(gold, predicted, zero_division=0) * 100),
        "recall": float(seqeval.recall_score(gold, predicted, zero_division=0) * 100),
        "accuracy": float(seqeval.accuracy_score(gold, predicted) * 100),
    }


def joint_metrics(
    predicted_intents: list[str],
    gold_intents: list[str],
    predicted_tags: list[list[str]],
    gold_tags: list[list[str]],
) -> dict[str, float]:
    """Joint intent detection and slot filling, x100, as the joint-NLU literature reports it (Goo et al.
    2018; Chen et al., arXiv 1902.10909, Table 2): intent accuracy, slot span F1 (with precision,
    recall and per-word accuracy, ``span_metrics``), and exact match, the share of sentences whose
    intent and every tag are right (their "sentence accuracy", a.k.a. semantic-frame accuracy).
    """
    intent_right = [p == g for p, g in zip(predicted_intents, gold_intents, strict=True)]
    exact = [i and p == g for i, p, g in zip(intent_right, predicted_tags, gold_tags, strict=True)]
    slots = span_metrics(predicted_tags, gold_tags)
    return {
        "intent_accuracy": float(np.mean(intent_right) * 100),
        "slot_f1": slots["f1"],
        "slot_precision": slots["precision"],
        "slot_recall": slots["recall"],
        "slot_accuracy": slots["accuracy"],
        "exact_match": float(np.mean(exact) * 100),
    }
