"""The store's manifest: what was stored, for which teacher, tokenizer and data, and each shard's checksum.

A store is reused only when the identity of the run asking for it (teacher weights, tokenizer,
data, tokenization length, stored views) equals the manifest's; any difference is reported, never
silently accepted. The manifest is rewritten atomically after every finished shard, which is
what makes a killed build resumable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import datasets
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from kdforge.errors import StoreError
from kdforge.files import atomic_path

FORMAT = 1
MANIFEST = "manifest.json"


class StoredViews(BaseModel):
    """Which teacher views a store holds, and how compactly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...]  # sorted view names: logits, embedding, hidden_states, attentions
    hidden_layers: tuple[int, ...] = ()  # hidden-state numbering (0 = embeddings)
    attention_layers: tuple[int, ...] = ()  # 1-based blocks
    top_k: int = 32  # logits with more classes than this are kept as top-k log-probs + tail mass
    precision: Literal["fp16", "int8"] = "fp16"  # of hidden states and attention maps


class Identity(BaseModel):
    """Everything that must agree for stored teacher outputs to be the ones a run would compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: str
    tokenizer: str
    data: str
    max_length: int
    views: StoredViews

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    def differences(self, other: Identity) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) != getattr(other, name)]


class Shard(BaseModel):
    file: str
    rows: int
    sha256: str
    bytes: int


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    identity: Identity
    teacher_name: str
    layers: int  # the teacher's blocks, heads and logit width: the shapes rows are read back into
    heads: int
    classes: int = 0
    rows: int  # training rows the store covers
    shard_rows: int
    shards: dict[int, Shard] = {}
    complete: bool = False
    build_seconds: float = 0.0

    @property
    def shard_count(self) -> int:
        return -(-self.rows // self.shard_rows)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards.values())


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StoreError(f"{path} is unreadable ({err}); delete {folder} to rebuild the store") from None
    if raw.get("format") != FORMAT:
        raise StoreError(
            f"the store in {folder} has format {raw.get('format')!r}, this kdforge reads format {FORMAT}; "
            f"rebuild it: delete the folder and run `kdforge store build`"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        raise StoreError(
            f"{path} is not a valid store manifest ({err.error_count()} errors); delete it to rebuild"
        ) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file: a kill leaves the old content or the new, never half."""
    try:
        with atomic_path(path) as partial:
            partial.write_text(text)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err.strerror}") from None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_text_atomic(folder / MANIFEST, manifest.model_dump_json(indent=1))


# ----- fingerprints ----------------------------------------------------------------------------


def teacher_fingerprint(model: torch.nn.Module, config_json: str) -> str:
    """Hash of the config and every weight: any fine-tuning step gives another teacher."""
    digest = hashlib.blake2b(config_json.encode(), digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    facts = {
        "class": type(tokenizer).__name__,
        "vocab": sorted(tokenizer.get_vocab().items()),
        "lowercase": getattr(tokenizer, "do_lower_case", None),
        "special": sorted(map(str, tokenizer.all_special_tokens)),
        "padding_side": tokenizer.padding_side,
    }
    return hashlib.blake2b(json.dumps(facts).encode(), digest_size=16).hexdigest()


def data_fingerprint(dataset: datasets.Dataset, task: str) -> str:
    """Hash of the task and every training input, in order (targets do not change teacher outputs)."""
    digest = hashlib.blake2b(task.encode(), digest_size=16)
    for column in sorted(set(dataset.column_names) - {"label", "score", "index"}):
        digest.update(column.encode())
        digest.update(json.dumps(list(dataset[column])).encode())
    return digest.hexdigest()
