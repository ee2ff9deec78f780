"""The knowledge store: a teacher's outputs computed once, kept on disk, reused by many students.

``teacher.mode: cached`` in a recipe reads teacher views from a store instead of running the
teacher. The store matching the run (same teacher weights, tokenizer, data, length and views) is
found and reused; otherwise it is built first (resumably). See docs/store.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import datasets

from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import StoreSpec
from kdforge.store.builder import build_store
from kdforge.store.manifest import (
    Identity,
    Manifest,
    StoredViews,
    data_fingerprint,
    read_manifest,
    teacher_fingerprint,
    tokenizer_fingerprint,
)
from kdforge.store.reader import KnowledgeStore, StoredTeacher

__all__ = ["Identity", "KnowledgeStore", "Manifest", "StoredTeacher", "StoredViews", "identity_of", "prepare_store"]

#: Teacher views a store can hold (``qkv`` cannot: its methods need a live teacher).
STORABLE = frozenset({"logits", "embedding", "hidden_states", "attentions"})


def default_root() -> Path:
    return Path(os.environ.get("KDFORGE_STORE_DIR") or Path.home() / ".cache" / "kdforge" / "stores")


def identity_of(
    teacher: TextModel,
    dataset: datasets.Dataset,
    task: str,
    max_length: int,
    views: StoredViews,
) -> Identity:
    return Identity(
        teacher=teacher_fingerprint(teacher.hf, teacher.hf.config.to_json_string(use_diff=False)),
        tokenizer=tokenizer_fingerprint(teacher.tokenizer),
        data=data_fingerprint(dataset, task),
        max_length=max_length,
        views=views,
    )


def store_folder(spec: StoreSpec, identity: Identity, teacher_name: str) -> Path:
    """``store.path`` when given, else one folder per identity under the store root."""
    if spec.path:
        return Path(spec.path)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(teacher_name.rstrip("/")).name or teacher_name).strip("-")[:40]
    return default_root() / f"{slug or 'teacher'}-{identity.key()}"


def prepare_store(
    spec: StoreSpec,
    identity: Identity,
    teacher: TextModel,
    teacher_name: str,
    dataset: datasets.Dataset,
    collator,
    position: int,
    log: Callable[[str], None],
    show: bool = True,
) -> KnowledgeStore:
    """The matching store, reused when complete, else built (or its build resumed) first."""
    folder = store_folder(spec, identity, teacher_name)
    existing = read_manifest(folder)
    hit = existing is not None and existing.identity == identity and existing.complete
    if hit:
        log(f"knowledge store [bold]hit[/]: {folder} ({existing.bytes / 1e6:,.1f} MB, {existing.rows:,} rows)")
    else:
        verb = "resuming" if existing is not None and existing.identity == identity else "building"
        log(f"knowledge store {verb}: {folder} (teacher {teacher_name}, {len(dataset):,} rows)")
        built = build_store(
            folder, identity, teacher, teacher_name, dataset, collator, position, spec.shard_rows, show,
            backend=spec.backend, workers=spec.workers,
        )  # fmt: skip
        log(f"knowledge store built in {built.build_seconds:.0f}s: {built.bytes / 1e6:,.1f} MB")
    # a build has just checksummed every shard it wrote or kept: only a found store is verified again
    return KnowledgeStore(folder, verify=spec.verify and hit)
