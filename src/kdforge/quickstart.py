"""``kdforge quickstart``: distil the packaged MiniLM teacher into a 2-layer student, offline.

It trains on sentences written for kdforge and shipped with it, keeps every sixth sentence
out for evaluation, and reports how well the student reproduces the teacher there (Spearman
between their pairwise similarities). With ``data`` pointing at an STS file or folder it
also scores both models against the gold similarity scores.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kdforge.recipe import Recipe, validate_recipe

HELD_OUT_EVERY = 6


def packaged_sentences() -> list[str]:
    text = resources.files("kdforge.resources").joinpath("quickstart_sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def quickstart_recipe(out: Path, data: str | None = None, epochs: float = 8.0, layers: int = 2) -> Recipe:
    """The quickstart as an ordinary recipe (written to ``OUT/quickstart.yaml`` by the CLI)."""
    sentences = packaged_sentences()
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    train = [s for i, s in enumerate(sentences) if i % HELD_OUT_EVERY]
    held_out = [s for i, s in enumerate(sentences) if not i % HELD_OUT_EVERY]
    (folder / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "held_out.txt").write_text("\n".join(held_out) + "\n", encoding="utf-8")
    recipe = {
        "name": "quickstart",
        "teacher": "minilm",
        "student": {"num_layers": layers},
        "task": {"name": "sts"},
        "data": {"train": [str(folder / "train.txt")], "eval": str(folder / "held_out.txt")},
        "methods": [{"name": "embedding_mse"}],
        "training": {"epochs": epochs, "batch_size": 32, "lr": 2e-4, "warmup_ratio": 0.05, "save_every": 100},
        "output": {"dir": str(out)},
    }
    if data:
        recipe["data"]["test"] = {"path": data, "split": "test"}
    return validate_recipe(recipe)
