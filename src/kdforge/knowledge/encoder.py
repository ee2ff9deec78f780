"""Knowledge from an encoder teacher: it labels perturbed copies of the task's own examples.

RetriKT's knowledge source (b) (arXiv 2310.15594 draws samples from an LLM; an encoder classifier
cannot generate, so it labels in-domain text instead). Each training example yields itself and
``copies`` perturbed copies: TinyBERT's word replacement with the teacher's nearest embedding
words, and optionally pQRNN's character distortion (tasks/augment.py). The teacher's soft
prediction of each copy is the knowledge; the label the copy was derived from is kept as its
intended label, and its example id as its ``source`` (so the student never retrieves a sibling of
the sample it is trained on).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import datasets
import torch
from rich.progress import track

from kdforge.errors import DataError
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import AugmentSpec
from kdforge.tasks.augment import Augmenter, WordNeighbours

CHUNK = 1024  # samples per step of the progress bar


@dataclass
class KnowledgeSamples:
    """What a knowledge source hands the sample store."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[int]  # the label each sample stands for
    sources: list[int]  # the training example it came from; -(row + 1) for generated ones
    probs: torch.Tensor  # the teacher's distribution over the labels [N, C]


def perturbed_copies(
    dataset: datasets.Dataset, teacher: TextModel, copies: int, augment: AugmentSpec, seed: int
) -> tuple[list[str], list[str] | None, list[int], list[int]]:
    """Every training row, then ``copies`` perturbed copies of each (texts, pairs, labels, sources)."""
    neighbours = WordNeighbours(teacher, augment.candidates) if augment.probability > 0 else None
    augmenter = Augmenter(augment, neighbours, seed)
    has_pairs = "text_pair" in dataset.column_names
    texts, pairs, labels, sources = [], [] if has_pairs else None, [], []
    for row in track(dataset, description="kdforge knowledge: perturbing", transient=True):
        versions = [(row["text"], row.get("text_pair"))]
        for copy in range(copies):
            rng = random.Random(f"{seed}/knowledge/{row['index']}/{copy}")
            versions.append(
                (augmenter.perturb(row["text"], rng), augmenter.perturb(row["text_pair"], rng) if has_pairs else None)
            )
        seen = set()
        for text, pair in versions:
            if (text, pair) in seen:  # a copy the perturbation left unchanged adds nothing
                continue
            seen.add((text, pair))
            texts.append(text)
            if pairs is not None:
                pairs.append(pair)
            labels.append(int(row["label"]))
            sources.append(int(row["index"]))
    return texts, pairs, labels, sources


def encoder_knowledge(
    dataset: datasets.Dataset,
    teacher: TextModel,
    copies: int,
    augment: AugmentSpec,
    seed: int,
    unlabeled: datasets.Dataset | None = None,
    batch_size: int = 64,
) -> KnowledgeSamples:
    """The training rows, their perturbed copies and any ``unlabeled`` rows, each with the teacher's soft
    prediction; an unlabeled row stands for the label the teacher gives it, and is its own source."""
    texts, pairs, labels, sources = perturbed_copies(dataset, teacher, copies, augment, seed)
    extra = 0
    if unlabeled is not None and len(unlabeled):
        if (pairs is None) != ("text_pair" not in unlabeled.column_names):
            raise DataError("knowledge.unlabeled: its rows must be single texts or pairs as the training data's are")
        extra = len(unlabeled)
        texts += list(unlabeled["text"])
        if pairs is not None:
            pairs += list(unlabeled["text_pair"])
    chunks = []
    for start in track(range(0, len(texts), CHUNK), description="kdforge knowledge: teacher labelling"):
        part = slice(start, start + CHUNK)
        chunks.append(teacher.predict(texts[part], pairs[part] if pairs is not None else None, batch_size))
    probs = torch.softmax(torch.cat(chunks).float(), dim=-1)
    labels += probs[len(labels) :].argmax(-1).tolist()
    sources += [-(row + 1) for row in range(len(sources), len(sources) + extra)]
    return KnowledgeSamples(texts, pairs, labels, sources, probs)
