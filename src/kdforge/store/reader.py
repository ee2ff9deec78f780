"""Reading teacher views back from a store, batch by batch, exactly where a live teacher would give them.

``StoredTeacher`` has the interface of the engine's ``TeacherSource`` (call it with a ``Batch``,
get ``Views``), so methods cannot tell a cached teacher from a live one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kdforge.errors import StoreError
from kdforge.methods.base import Batch
from kdforge.models.views import Views
from kdforge.store.codec import ShardRows, expand_logits
from kdforge.store.manifest import Manifest, read_manifest
from kdforge.store.shards import map_shard, sha256_file


class StoredLayers(tuple):
    """A per-layer tuple in which only the stored layers are filled; reading another says what to do."""

    view: str
    stored: tuple[int, ...]

    def __new__(cls, items, view: str, stored: tuple[int, ...]):
        obj = super().__new__(cls, items)
        obj.view, obj.stored = view, stored
        return obj

    def __getitem__(self, key):
        value = super().__getitem__(key)
        missing = [v for v in (value if isinstance(key, slice) else (value,)) if v is None]
        if missing:
            raise StoreError(
                f"the knowledge store holds {self.view} of layers {list(self.stored)}, but a method reads "
                f"{key!r}; set teacher.store.layers to include it (or 'auto') and rebuild"
            )
        return tuple(value) if isinstance(key, slice) else value

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class KnowledgeStore:
    """A complete store, memory-mapped; rows found by the id the training batch carries."""

    def __init__(self, folder: Path, verify: bool = True) -> None:
        manifest = read_manifest(folder)
        if manifest is None:
            raise StoreError(f"no knowledge store in {folder} (no manifest.json); build it with `kdforge store build`")
        if not manifest.complete:
            raise StoreError(f"the store in {folder} is incomplete; rerun `kdforge store build` to finish it")
        self.folder, self.manifest = folder, manifest
        hint = f"delete {folder} and rerun `kdforge store build`, or rerun it to rebuild the damaged shard"
        self.rows: list[ShardRows] = []
        ids, where, position = [], [], []
        for number in sorted(manifest.shards):
            shard = manifest.shards[number]
            path = folder / shard.file
            if not path.is_file() or path.stat().st_size != shard.bytes:
                raise StoreError(f"store shard {path} is missing or truncated; {hint}")
            if verify and sha256_file(path) != shard.sha256:
                raise StoreError(f"store shard {path} does not match its checksum (corrupted); {hint}")
            rows = ShardRows(map_shard(path, hint), heads=manifest.heads)
            self.rows.append(rows)
            ids.append(rows.arrays["id"])
            where.append(np.full(len(rows.lengths), len(self.rows) - 1))
            position.append(np.arange(len(rows.lengths)))
        all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        size = int(all_ids.max()) + 1 if len(all_ids) else 0
        self._shard = np.full(size, -1, dtype=np.int64)
        self._row = np.zeros(size, dtype=np.int64)
        if size:
            self._shard[all_ids] = np.concatenate(where)
            self._row[all_ids] = np.concatenate(position)
        views = manifest.identity.views
        self.names = frozenset(views.names)
        self.hidden_layers, self.attention_layers = views.hidden_layers, views.attention_layers

    def _locate(self, ids: list[int]) -> list[tuple[ShardRows, int]]:
        found = []
        for i in ids:
            shard = self._shard[i] if 0 <= i < len(self._shard) else -1
            if shard < 0:
                raise StoreError(f"the store in {self.folder} has no row for training example {i}; rebuild it")
            found.append((self.rows[shard], int(self._row[i])))
        return found

    def views(self, ids: list[int], mask: Tensor, needs: frozenset[str]) -> Views:
        located = self._locate(ids)
        views = Views(attention_mask=mask)
        keep = mask.bool().cpu()
        positions = [keep[b].nonzero().squeeze(-1) for b in range(len(ids))]
        for b, (rows, r) in enumerate(located):
            if int(rows.lengths[r]) != len(positions[b]):
                raise StoreError(
                    f"training example {ids[b]} has {len(positions[b])} teacher tokens in this run but "
                    f"{int(rows.lengths[r])} in the store {self.folder}: the tokenization differs; rebuild the store"
                )
        device = mask.device
        if "embedding" in needs:
            embedding = np.stack([rows.arrays["embedding"][r] for rows, r in located])
            views.embedding = torch.from_numpy(embedding).to(device)
        if "logits" in needs:
            views.logits = self._logits(located, keep, positions).to(device)
        if "hidden_states" in needs:
            layers: list[Tensor | None] = [None] * (self.manifest.layers + 1)
            for layer in self.hidden_layers:
                read = lambda rows, r, n=layer: rows.hidden(n, r)  # noqa: E731
                layers[layer] = self._tokens(located, keep, positions, read).to(device)
            views.hidden_states = StoredLayers(layers, "hidden_states", self.hidden_layers)
        if "attentions" in needs:
            maps: list[Tensor | None] = [None] * self.manifest.layers
            for layer in self.attention_layers:
                maps[layer - 1] = self._maps(located, keep, positions, layer).to(device)
            views.attentions = StoredLayers(maps, "attentions", self.attention_layers)
        return views

    @staticmethod
    def _tokens(located, keep: Tensor, positions, read) -> Tensor:
        first = read(*located[0])
        out = torch.zeros(keep.size(0), keep.size(1), first.shape[-1])
        for b, (rows, r) in enumerate(located):
            out[b, positions[b]] = torch.from_numpy(np.array(read(rows, r), dtype=np.float32))
        return out

    def _maps(self, located, keep: Tensor, positions, layer: int) -> Tensor:
        heads, width = self.manifest.heads, keep.size(1)
        out = torch.zeros(keep.size(0), heads, width, width)
        for b, (rows, r) in enumerate(located):
            pos = positions[b]
            block = torch.from_numpy(np.array(rows.attention(layer, r), dtype=np.float32))
            out[b][:, pos[:, None], pos[None, :]] = block
        return out

    def _logits(self, located, keep: Tensor, positions) -> Tensor:
        arrays = located[0][0].arrays
        classes = self.manifest.classes
        if "logits" in arrays:  # sentence-level, dense
            return torch.from_numpy(np.stack([rows.arrays["logits"][r] for rows, r in located]))
        if "logits.values" in arrays:  # sentence-level, top-k
            parts = [
                [torch.from_numpy(np.array(rows.arrays[f"logits.{k}"][r : r + 1])) for rows, r in located]
                for k in ("values", "ids", "tail")
            ]
            return expand_logits(*(torch.cat(p) for p in parts), classes)

        def read(rows: ShardRows, r: int) -> np.ndarray:
            a, b = rows.tokens[r], rows.tokens[r + 1]
            if "token_logits" in rows.arrays:
                return rows.arrays["token_logits"][a:b]
            values, ids, tail = (
                torch.from_numpy(np.array(rows.arrays[f"token_logits.{k}"][a:b])) for k in ("values", "ids", "tail")
            )
            return expand_logits(values, ids, tail, classes).numpy()

        return self._tokens(located, keep, positions, read)


class StoredTeacher:
    """The engine's teacher source for ``teacher.mode: cached``: views read from a ``KnowledgeStore``."""

    def __init__(self, store: KnowledgeStore, needs: frozenset[str], position: int = 0, vocabulary=None) -> None:
        self.store, self.needs, self.position = store, needs, position
        self.vocabulary = vocabulary  # a compressed student's: token logits are cut to its ids
        self.hits = 0
        self.misses = 0
        self.seconds = 0.0  # no teacher forward ever runs

    def __call__(self, batch: Batch) -> Views:
        inputs = batch.teacher_inputs[self.position]
        ids = (batch.index if batch.teacher_index is None else batch.teacher_index).tolist()
        self.hits += 1
        views = self.store.views(ids, inputs["attention_mask"], self.needs)
        if self.vocabulary is not None and views.logits is not None and views.logits.dim() == 3:
            views.logits = self.vocabulary.teacher_logits(views.logits)
        return views


def store_size(manifest: Manifest) -> str:
    return f"{manifest.bytes / 1e6:,.1f} MB in {len(manifest.shards)} shards"
