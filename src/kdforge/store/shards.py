"""Shard files: safetensors written atomically, read back memory-mapped, checked by SHA-256.

A shard is read by mapping the file and viewing each tensor's byte range with numpy: no copy,
no unpickling, and a store larger than memory costs only the pages a batch touches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from kdforge.errors import StoreError
from kdforge.files import atomic_path

# safetensors dtype names -> numpy
_DTYPES = {"F16": np.float16, "F32": np.float32, "I8": np.int8, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
_HEADER_LIMIT = 100 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
    """Write ``tensors`` to ``path`` (via a temporary file, so a kill never leaves half a shard)."""
    try:
        with atomic_path(path) as partial:
            save_file({name: t.contiguous() for name, t in tensors.items()}, str(partial))
            digest = sha256_file(partial)
    except OSError as err:
        raise StoreError(f"cannot write store shard {path}: {err.strerror}") from None
    return digest, path.stat().st_size


def map_shard(path: Path, rebuild_hint: str) -> dict[str, np.ndarray]:
    """The shard's tensors as read-only numpy views of one memory map."""
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as err:
        raise StoreError(f"cannot read store shard {path}: {err}; {rebuild_hint}") from None
    try:
        size = int.from_bytes(raw[:8].tobytes(), "little")
        if not 0 < size <= min(_HEADER_LIMIT, len(raw) - 8):
            raise ValueError("bad header length")
        header = json.loads(raw[8 : 8 + size].tobytes())
        start = 8 + size
        arrays = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            if start + end > len(raw):
                raise ValueError(f"tensor {name} runs past the end of the file")
            arrays[name] = raw[start + begin : start + end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
    except (ValueError, KeyError, TypeError) as err:
        raise StoreError(f"store shard {path} is truncated or corrupted ({err}); {rebuild_hint}") from None
    return arrays
