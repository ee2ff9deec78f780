"""The process group as Accelerate sees it, set up the same way everywhere in kdforge.

Under ``accelerate launch`` (or ``torchrun``) on a machine without CUDA, Accelerate forms a
multi-process CPU group (gloo) only when told to use the CPU; otherwise every process would
believe it is alone and train on the same data.

Accelerate turns FSDP and DeepSpeed on for accelerator devices only: on the CPU an FSDP or
DeepSpeed config would silently give plain data parallelism (or, for DeepSpeed, processes that
each believe they are alone), so kdforge refuses it instead.
"""

from __future__ import annotations

import os

import torch
from accelerate.state import PartialState

from kdforge.errors import TrainingError

SHARDING = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def sharding_requested() -> str | None:
    """``FSDP`` or ``DeepSpeed`` when ``accelerate launch`` was configured for it, else None."""
    return next((name for key, name in SHARDING.items() if os.environ.get(key, "").lower() == "true"), None)


def cpu_group() -> bool:
    """Several processes were launched and there is no CUDA device: a CPU (gloo) group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def process_state() -> PartialState:
    sharding = sharding_requested()
    if sharding is not None and not torch.cuda.is_available():
        raise TrainingError(
            f"accelerate launch asked for {sharding}, but this machine has no CUDA device: Accelerate shards "
            "models on GPUs only (on the CPU it would not shard at all); use configs/accelerate/ddp-cpu.yaml "
            "here, or run on GPUs (docs/scaling.md)"
        )
    return PartialState(cpu=cpu_group())
