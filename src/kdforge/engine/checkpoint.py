"""Checkpoints in safetensors + JSON: nothing is unpickled when a run resumes.

A checkpoint holds the student with the methods' learned parameters, the optimizer and
scheduler state, the RNG states and the loop position. It is written to a temporary folder
and renamed into place, so a kill during saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kdforge.errors import CheckpointError

PREFIX = "step-"


@dataclass
class Checkpoint:
    path: Path
    state: dict  # loop position, fingerprint, loss history

    @property
    def step(self) -> int:
        return int(self.state["global_step"])


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors that share memory (tied weights): those are copied."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu()
        pointer = value.untyped_storage().data_ptr() if value.numel() else -1
        out[key] = value.clone().contiguous() if pointer in seen else value.contiguous()
        seen.add(pointer)
    save_file(out, str(path))


def _optimizer_to_files(optimizer_state: dict, folder: Path) -> None:
    tensors, scalars = {}, {}
    for param_id, values in optimizer_state["state"].items():
        for key, value in values.items():
            name = f"{param_id}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value
            else:
                scalars[name] = value
    _save_tensors(tensors, folder / "optimizer.safetensors")
    meta = {"param_groups": optimizer_state["param_groups"], "scalars": scalars}
    (folder / "optimizer.json").write_text(json.dumps(meta))


def _optimizer_from_files(folder: Path) -> dict:
    tensors = load_file(str(folder / "optimizer.safetensors"))
    meta = json.loads((folder / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def _restore_rng(folder: Path) -> None:
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    meta = json.loads((folder / "rng.json").read_text())
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    folder: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    scheduler_state: dict,
    state: dict,
    keep: int,
) -> Path:
    try:
        return _write(folder, step, model_state, optimizer_state, scheduler_state, state, keep)
    except OSError as err:
        raise CheckpointError(
            f"cannot write a checkpoint to {folder}: {err.strerror or err}; free space or fix permissions, "
            "then rerun to resume from the previous checkpoint"
        ) from err


def _write(
    folder: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    scheduler_state: dict,
    state: dict,
    keep: int,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _save_tensors(model_state, tmp / "model.safetensors")
    _optimizer_to_files(optimizer_state, tmp)
    (tmp / "scheduler.json").write_text(json.dumps(scheduler_state))
    rng_tensors, rng_meta = _rng_state()
    _save_tensors(rng_tensors, tmp / "rng.safetensors")
    (tmp / "rng.json").write_text(json.dumps(rng_meta))
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def latest_checkpoint(folder: Path, fingerprint: str) -> Checkpoint | None:
    """The newest complete checkpoint of this run; another run's checkpoints are an error."""
    for path in reversed(list_checkpoints(folder)):
        try:
            state = json.loads((path / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue  # incomplete: fall back to the one before
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path} was written by a different recipe; use another output folder or delete {folder}"
            )
        return Checkpoint(path=path, state=state)
    return None


def load_checkpoint(checkpoint: Checkpoint) -> tuple[dict, dict, dict]:
    """Tensors and states of ``checkpoint``; restores the RNGs as a side effect."""
    path = checkpoint.path
    try:
        model = load_file(str(path / "model.safetensors"))
        optimizer = _optimizer_from_files(path)
        scheduler = json.loads((path / "scheduler.json").read_text())
        _restore_rng(path)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({err}); delete it to resume from the one before"
        ) from err
    return model, optimizer, scheduler
