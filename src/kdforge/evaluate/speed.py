"""CPU/GPU throughput of encoders, measured side by side in the same process."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from kdforge.models.text_model import TextModel


def _run(model: TextModel, texts: Sequence[str], batch_size: int) -> float:
    start = time.perf_counter()
    if model.kind == "classifier":
        model.predict(texts, batch_size=batch_size)
    else:
        model.encode(texts, batch_size=batch_size)
    return time.perf_counter() - start


def throughput(models: dict[str, TextModel], texts: Sequence[str], batch_size: int = 64, repeats: int = 3) -> dict:
    """Sentences per second for each model on the same texts.

    Rounds alternate between models so that frequency scaling or a noisy neighbour affects
    all of them alike; the best round per model is kept (the least disturbed one).
    """
    texts = list(texts)
    for model in models.values():  # warm-up: allocator, kernels, lazy inits
        _run(model, texts[: batch_size * 2], batch_size)
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for name, model in models.items():
            best[name] = min(best[name], _run(model, texts, batch_size))
    return {
        name: {
            "sentences_per_second": len(texts) / seconds,
            "seconds": seconds,
            "batch_size": batch_size,
            "threads": torch.get_num_threads(),
            "sentences": len(texts),
        }
        for name, seconds in best.items()
    }
