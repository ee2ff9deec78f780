"""Building a store: the teacher runs once over the training rows, shard by shard.

Shard ``s`` always holds the same rows (``s * shard_rows`` onwards), so a killed build redoes at
most one shard: finished shards are listed (with their checksums) as soon as they are written,
and a rerun verifies and skips them. Under ``accelerate launch`` each process builds every
``world``-th shard and lists its own in ``parts/``; the first process merges the lists into the
manifest at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from kdforge.engine.processes import process_state
from kdforge.errors import StoreError
from kdforge.models.text_model import TextModel
from kdforge.store.codec import concatenate, encode
from kdforge.store.manifest import Identity, Manifest, Shard, read_manifest, write_manifest, write_text_atomic
from kdforge.store.shards import sha256_file, write_shard

BATCH = 64


def _listed(folder: Path, manifest: Manifest) -> dict[int, Shard]:
    """Shards the manifest or any process's part list records as finished."""
    shards = dict(manifest.shards)
    for part in sorted((folder / "parts").glob("*.json")):
        try:
            shards.update({int(k): Shard.model_validate(v) for k, v in json.loads(part.read_text()).items()})
        except (OSError, ValueError) as err:
            raise StoreError(f"{part} is unreadable ({err}); delete it to rebuild its shards") from None
    return shards


def _intact(folder: Path, shard: Shard) -> bool:
    path = folder / shard.file
    return path.is_file() and path.stat().st_size == shard.bytes and sha256_file(path) == shard.sha256


def _write_part(folder: Path, rank: int, shards: dict[int, Shard]) -> None:
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    write_text_atomic(parts / f"rank-{rank}.json", json.dumps({k: v.model_dump() for k, v in shards.items()}))


def write_rows(
    teacher: TextModel,
    dataset: datasets.Dataset,
    collator,
    position: int,
    identity: Identity,
    folder: Path,
    shard_rows: int,
    number: int,
    progress: Callable[[int], object] = lambda n: None,
) -> Shard:
    """Shard ``number``: the teacher's views of its rows, encoded and written; its manifest entry."""
    needs = frozenset(identity.views.names)
    part = dataset.select(range(number * shard_rows, min((number + 1) * shard_rows, len(dataset)))).to_list()
    order = sorted(range(len(part)), key=lambda i: len(part[i]["text"]))  # less padding per batch
    chunks = []
    for start in range(0, len(order), BATCH):
        batch = collator([part[i] for i in order[start : start + BATCH]])
        inputs = {k: v.to(teacher.device) for k, v in batch.teacher_inputs[position].items()}
        ids = batch.index if batch.teacher_index is None else batch.teacher_index
        with torch.inference_mode():
            views = teacher(inputs, needs)
        chunks.append(encode(views, ids, inputs["attention_mask"], identity.views))
        progress(min(BATCH, len(order) - start))
    file = f"shard-{number:05d}.safetensors"
    digest, size = write_shard(folder / file, concatenate(chunks))
    return Shard(file=file, rows=len(part), sha256=digest, bytes=size)


def build_store(
    folder: Path,
    identity: Identity,
    teacher: TextModel,
    teacher_name: str,
    dataset: datasets.Dataset,
    collator,
    position: int,
    shard_rows: int,
    show: bool = True,
    backend: str = "local",
    workers: int = 2,
) -> Manifest:
    """Run ``teacher`` over ``dataset`` (batches made by the training ``collator``) into ``folder``.

    ``backend: ray`` runs the teacher pass as Ray Data batch inference instead (same shards, same format).
    """
    state = process_state()
    rank, world = state.process_index, state.num_processes
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create the store folder {folder}: {err.strerror}") from None
    manifest = read_manifest(folder)
    if manifest is None:
        classes = teacher.num_labels or 0
        if teacher.kind in ("masked_lm", "causal_lm"):
            classes = teacher.hf.get_output_embeddings().weight.size(0)
        manifest = Manifest(
            identity=identity,
            teacher_name=teacher_name,
            layers=teacher.num_layers,
            heads=teacher.num_heads,
            classes=classes,
            rows=len(dataset),
            shard_rows=shard_rows,
        )
        if state.is_main_process:
            write_manifest(folder, manifest)
    elif manifest.identity != identity:
        raise StoreError(
            f"the store in {folder} was built for another {', '.join(manifest.identity.differences(identity))}; "
            "give teacher.store.path another folder, or delete this one to rebuild"
        )
    state.wait_for_everyone()
    listed = _listed(folder, manifest)
    mine = {s: shard for s, shard in listed.items() if s % world == rank and _intact(folder, shard)}
    todo = [s for s in range(manifest.shard_count) if s % world == rank and s not in mine]
    needs = frozenset(identity.views.names)
    teacher.prepare_for(needs)
    teacher.eval()
    started = time.perf_counter()
    if backend == "ray":  # the first process hands every missing shard to Ray workers
        if state.is_main_process:
            from kdforge.store.ray_backend import build_with_ray

            todo = [s for s in range(manifest.shard_count) if s not in listed or not _intact(folder, listed[s])]
            mine = {s: shard for s, shard in listed.items() if s not in todo}
            mine.update(build_with_ray(teacher, dataset, collator.task, identity, folder, shard_rows, todo, workers))
            _write_part(folder, rank, mine)
    else:
        rows_todo = sum(min(shard_rows, len(dataset) - s * shard_rows) for s in todo)
        off = not show or not state.is_local_main_process
        with tqdm(total=rows_todo, desc="store", unit="row", disable=off) as bar:
            for s in todo:
                mine[s] = write_rows(teacher, dataset, collator, position, identity, folder, shard_rows, s, bar.update)
                _write_part(folder, rank, mine)
    state.wait_for_everyone()
    if state.is_main_process:
        manifest.shards = {s: shard for s, shard in _listed(folder, manifest).items()}
        manifest.complete = len(manifest.shards) == manifest.shard_count
        manifest.build_seconds += time.perf_counter() - started
        write_manifest(folder, manifest)
    state.wait_for_everyone()
    final = read_manifest(folder)
    assert final is not None
    return final
