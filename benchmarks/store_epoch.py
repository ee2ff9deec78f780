"""Knowledge store vs live teacher: one training epoch of the same 2-layer MiniLM student, three ways,
in one run. Writes the table into BENCHMARKS.md.

- online: the packaged MiniLM teacher runs on every batch (teacher_cache off);
- cached: ``teacher.mode: cached``, views read from the store (built once first; build time reported);
- floor: the same student steps with every row's teacher tensors already decoded in memory (fp32),
  padded per batch: what the student alone costs.

Methods: embedding_mse + hidden_mse (token-level hidden states, which only a store can keep).

    python benchmarks/store_epoch.py [--rows 12000] [--out runs/bench-store]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from _common import command, machine, table, write_section
from torch.nn.utils.rnn import pad_sequence

import kdforge
import kdforge.engine.trainer as trainer
from kdforge.engine.pipeline import build_stores
from kdforge.models.loading import quiet_transformers
from kdforge.models.views import Views
from kdforge.recipe import validate_recipe
from kdforge.store import KnowledgeStore
from kdforge.store.reader import StoredLayers, StoredTeacher


def recipe(data: Path, rows: int, out: Path, mode: str) -> dict:
    return {
        "name": f"store-epoch-{mode}",
        "seed": 42,
        "teacher": {"model": "minilm", "mode": "online" if mode == "online" else "cached",
                    "store": {"path": str(out / "store")}},
        "student": {"layers": [0, 5]},
        "task": {"name": "sts"},
        "data": {"train": [{"path": str(data / "glue_sst2" / "train.tsv"), "limit": rows}],
                 "eval": str(data / "stsb" / "sts-dev.csv")},
        "methods": [{"name": "embedding_mse"}, {"name": "hidden_mse"}],
        "training": {"epochs": 1, "batch_size": 32, "lr": 1e-4, "teacher_cache": "off", "save_every": 100000},
        "output": {"benchmark": False, "export": False},
    }  # fmt: skip


class InMemory:
    """Every row's teacher views decoded once into fp32 tensors; batches are only padded from them."""

    def __init__(self, stored: StoredTeacher) -> None:
        store = stored.store
        self.needs, self.position = stored.needs, stored.position
        self.layers = store.hidden_layers
        self.count = store.manifest.layers + 1
        self.rows: dict[int, dict] = {}
        for shard in store.rows:
            for r, i in enumerate(shard.arrays["id"].tolist()):
                row = {f"hidden.{n}": torch.from_numpy(shard.hidden(n, r).astype("float32")) for n in self.layers}
                if "embedding" in self.needs:
                    row["embedding"] = torch.from_numpy(shard.arrays["embedding"][r].copy())
                self.rows[i] = row
        self.hits, self.misses, self.seconds = 0, 0, 0.0

    def __call__(self, batch) -> Views:
        mask = batch.teacher_inputs[self.position]["attention_mask"]
        rows = [self.rows[i] for i in batch.index.tolist()]
        views = Views(attention_mask=mask)
        if "embedding" in self.needs:
            views.embedding = torch.stack([r["embedding"] for r in rows])
        layers = [None] * self.count
        for n in self.layers:
            padded = pad_sequence([r[f"hidden.{n}"] for r in rows], batch_first=True)
            layers[n] = torch.nn.functional.pad(padded, (0, 0, 0, mask.size(1) - padded.size(1)))
        views.hidden_states = StoredLayers(layers, "hidden_states", self.layers)
        self.hits += 1
        return views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12000, help="SST-2 training sentences (one epoch)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-store"))
    args = parser.parse_args()
    quiet_transformers()
    from _common import shared_data

    data, out = shared_data(), args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    results = {}
    results["online"] = kdforge.run(validate_recipe(recipe(data, args.rows, out, "online")), out / "online", show=False)

    started = time.perf_counter()
    build_stores(validate_recipe(recipe(data, args.rows, out, "cached")), out / "cached")
    build_seconds = time.perf_counter() - started
    store = KnowledgeStore(out / "store")
    results["cached"] = kdforge.run(validate_recipe(recipe(data, args.rows, out, "cached")), out / "cached", show=False)

    original = trainer.cached_teacher
    trainer.cached_teacher = lambda *a, **k: InMemory(original(*a, **k))
    try:
        results["floor"] = kdforge.run(
            validate_recipe(recipe(data, args.rows, out, "floor")), out / "floor", show=False
        )
    finally:
        trainer.cached_teacher = original

    seconds = {mode: r["training"]["seconds"] for mode, r in results.items()}
    spearman = {mode: r["metrics"]["student"]["eval"]["spearman"] for mode, r in results.items()}
    steps = results["online"]["training"]["steps"]
    tokens = int(sum(s.lengths.sum() for s in store.rows))
    rows = [
        [
            mode,
            f"{seconds[mode]:.1f}",
            f"{seconds[mode] / steps * 1000:.0f}",
            f"{seconds[mode] / seconds['floor']:.2f}x",
            f"{spearman[mode]:.2f}",
        ]
        for mode in ("online", "cached", "floor")
    ]
    summary = {"seconds": seconds, "build_seconds": build_seconds, "store_bytes": store.manifest.bytes,
               "tokens": tokens, "spearman": spearman}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    views = store.manifest.identity.views
    body = f"""## Knowledge store: epoch time cached vs online vs in-memory floor (issue 4)

Command: `{command()}`, on {machine()}.
Packaged MiniLM-L6 teacher, 2-layer student (blocks 0 and 5), `embedding_mse` + `hidden_mse`, one epoch of
{store.manifest.rows:,} SST-2 sentences ({steps} steps of batch 32), same seed, in one process one after the other.
The floor is the same student steps with every row's teacher tensors decoded into memory beforehand.
STS-B dev Spearman after the epoch shows the three runs train the same student.

{table(["teacher", "epoch seconds", "ms / step", "vs floor", "STS-B dev Spearman"], rows)}

- Cached epoch / floor: **{seconds["cached"] / seconds["floor"]:.2f}x** (target <= 1.15x); online / floor:
  {seconds["online"] / seconds["floor"]:.2f}x.
- One-time store build (teacher forward over the {store.manifest.rows:,} rows, plus writing):
  {build_seconds:.1f} s. Store:
  {store.manifest.bytes / 1e6:,.1f} MB for {tokens:,} tokens ({store.manifest.bytes / tokens:,.0f} bytes per token):
  hidden layers {list(views.hidden_layers)} in {views.precision} and the sentence embedding (fp32).
"""
    write_section("store-epoch", body)
    print(body)


if __name__ == "__main__":
    main()
