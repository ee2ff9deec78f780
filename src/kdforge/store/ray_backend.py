"""Building a store with Ray Data: the teacher pass as batch inference over shards, on a Ray cluster.

Each Ray actor loads the teacher once (from the same folder or hub id the recipe names) and writes
whole shards with the same code as the local builder, so the store is identical in format; the
driver collects the shards' manifest entries. Any Ray cluster works: a local one by default, or the
one ``RAY_ADDRESS`` points at (every node must see the store folder, e.g. a shared filesystem).
Install with ``pip install "kdforge[ray]"``.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from kdforge.errors import StoreError
from kdforge.models.text_model import TextModel
from kdforge.store.manifest import Identity, Shard


class ShardWriter:
    """A Ray actor: one teacher, many shards."""

    def __init__(self, teacher: str, kind: str, dataset, task, identity: str, folder: str, shard_rows: int) -> None:
        from kdforge.engine.collate import Collator
        from kdforge.models import load_model
        from kdforge.models.loading import quiet_transformers

        quiet_transformers()
        self.teacher = load_model(teacher, kind=kind)
        self.identity = Identity.model_validate_json(identity)
        self.teacher.prepare_for(frozenset(self.identity.views.names))
        self.teacher.eval()
        self.collator = Collator(self.teacher, [self.teacher], self.identity.max_length, task)
        self.dataset, self.folder, self.shard_rows = dataset, Path(folder), shard_rows

    def __call__(self, batch: dict) -> dict:
        from kdforge.store.builder import write_rows

        entries = [
            write_rows(self.teacher, self.dataset, self.collator, 0, self.identity, self.folder, self.shard_rows, s)
            for s in map(int, batch["shard"])
        ]
        return {"shard": list(batch["shard"]), "entry": [e.model_dump_json() for e in entries]}


def build_with_ray(
    teacher: TextModel,
    dataset: datasets.Dataset,
    task,
    identity: Identity,
    folder: Path,
    shard_rows: int,
    shards: list[int],
    workers: int,
) -> dict[int, Shard]:
    """Write ``shards`` with ``workers`` Ray actors; their manifest entries by shard number."""
    try:
        import ray
    except ImportError:
        raise StoreError('teacher.store.backend: ray needs Ray; pip install "kdforge[ray]"') from None
    if not shards:
        return {}
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    local = Path(teacher.name)
    source = str(local.resolve()) if local.exists() else teacher.name  # actors may start elsewhere
    items = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
    written = items.map_batches(
        ShardWriter,
        batch_size=1,
        concurrency=min(workers, len(shards)),
        fn_constructor_kwargs={
            "teacher": source,
            "kind": teacher.kind,
            "dataset": dataset,
            "task": task,
            "identity": identity.model_dump_json(),
            "folder": str(folder.resolve()),
            "shard_rows": shard_rows,
        },
    ).take_all()
    return {int(row["shard"]): Shard.model_validate_json(row["entry"]) for row in written}
