"""The process group as Accelerate sees it, set up the same way everywhere in kdforge.

Under ``accelerate launch`` (or ``torchrun``) on a machine without CUDA, Accelerate forms a
multi-process CPU group (gloo) only when told to use the CPU; otherwise every process would
believe it is alone and train on the same data.
"""

from __future__ import annotations

import os

import torch
from accelerate.state import PartialState


def cpu_group() -> bool:
    """Several processes were launched and there is no CUDA device: a CPU (gloo) group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def process_state() -> PartialState:
    return PartialState(cpu=cpu_group())
