"""A sample store: texts the teacher labelled once, with its soft predictions, and a FAISS index.

RetriKT (arXiv 2310.15594, Sec. 3.3) keeps a teacher's knowledge outside the student: a store
of in-domain samples, each with the teacher's distribution over the labels, that a tiny student
searches at inference. The per-row knowledge store (``store/reader.py``) is keyed by training
row and read by the engine; this one is keyed by content and searched by meaning.

A sample store is a folder:

- ``knowledge.json``: format, label names, sample count, where the samples came from;
- ``samples/``: an Arrow dataset (``text`` [, ``text_pair``], ``label`` = the label the sample
  stands for, ``source`` = the training example it was derived from, or ``-(row + 1)`` for a
  generated sample, so that no sample is its own neighbour during training);
- ``teacher.safetensors``: ``probs`` ``[N, C]``, the teacher's distribution for each sample;
- once a student has been trained to search it: ``index.faiss``, a flat inner-product index holding
  the student's L2-normalised keys ``[N, D]`` (a non-flat index would need them beside it, as
  ``keys.safetensors``, which earlier versions always wrote). FAISS writes its own binary format,
  never a pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from kdforge.errors import StoreError

FORMAT = "kdforge-samples"
VERSION = 1
MANIFEST = "knowledge.json"


def is_sample_store(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


@dataclass
class SampleStore:
    """The samples, the teacher's distributions over ``labels`` and (once searched) the keys."""

    folder: Path
    labels: list[str]
    samples: datasets.Dataset
    probs: Tensor
    meta: dict

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def texts(self) -> list[str]:
        return list(self.samples["text"])

    @property
    def pairs(self) -> list[str] | None:
        return list(self.samples["text_pair"]) if "text_pair" in self.samples.column_names else None

    @property
    def sources(self) -> Tensor:
        return torch.tensor(self.samples["source"], dtype=torch.long)

    def size_bytes(self) -> int:
        """What the store adds to a deployed student, on disk."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


def write_samples(
    folder: str | Path,
    texts: list[str],
    labels: list[int],
    sources: list[int],
    probs: Tensor,
    label_names: list[str],
    pairs: list[str] | None = None,
    meta: dict | None = None,
) -> SampleStore:
    """Write a sample store (replacing one that is there)."""
    n = len(texts)
    if not (len(labels) == len(sources) == probs.shape[0] == n) or (pairs is not None and len(pairs) != n):
        raise StoreError(f"{folder}: {n} texts but {len(labels)} labels, {len(sources)} sources, {probs.shape[0]} rows")
    if probs.shape[1] != len(label_names):
        raise StoreError(
            f"{folder}: teacher distributions over {probs.shape[1]} classes, {len(label_names)} label names"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns: dict[str, list] = {"text": list(texts)}
    if pairs is not None:
        columns["text_pair"] = list(pairs)
    columns |= {"label": [label_names[i] for i in labels], "source": list(sources)}
    samples = datasets.Dataset.from_dict(columns)
    samples.save_to_disk(str(folder / "samples"))
    save_file({"probs": probs.float().contiguous()}, str(folder / "teacher.safetensors"))
    for stale in ("keys.safetensors", "index.faiss"):
        (folder / stale).unlink(missing_ok=True)
    manifest = {"format": FORMAT, "version": VERSION, "labels": list(label_names), "count": n, **(meta or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return open_samples(folder)


def open_samples(folder: str | Path) -> SampleStore:
    """Open a sample store; a folder that is not one, or a damaged one, is a one-line ``StoreError``."""
    folder = Path(folder)
    if not is_sample_store(folder):
        raise StoreError(f"{folder}: not a sample store (no {MANIFEST}); a 'kind: knowledge' stage writes one")
    meta = json.loads((folder / MANIFEST).read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise StoreError(
            f"{folder / MANIFEST}: format {meta.get('format')} v{meta.get('version')}, this kdforge reads "
            f"{FORMAT} v{VERSION}; rebuild it with its knowledge stage"
        )
    try:
        samples = datasets.load_from_disk(str(folder / "samples"))
        probs = load_file(str(folder / "teacher.safetensors"))["probs"]
    except (FileNotFoundError, OSError, KeyError) as err:
        raise StoreError(f"{folder}: incomplete sample store ({err}); rebuild it with its knowledge stage") from None
    if len(samples) != meta["count"] or probs.shape != (meta["count"], len(meta["labels"])):
        raise StoreError(
            f"{folder}: {len(samples)} samples and {tuple(probs.shape)} distributions, manifest says {meta['count']}"
        )
    return SampleStore(folder, list(meta["labels"]), samples, probs, meta)
