"""Where a teacher runs, in which precision, and whether its weights stay on the CPU.

Distillation only ever reads a teacher, so it need not sit on the device in fp32 beside the
student: a bf16/fp16 teacher takes half the memory (and runs faster on GPUs with bf16/fp16
units), an int8 teacher (dynamic quantization of its linear layers) runs faster on CPUs, and
a teacher larger than the device memory can keep its weights on the CPU and have them streamed
onto the device block by block for each forward pass, as InfMoE (arXiv 2106.04426) does for
huge teachers. The streaming is Accelerate's ``cpu_offload`` hooks, not kdforge's own.

Whatever the placement, the teacher is in eval mode and holds no gradients; the engine casts
its outputs back to float32 before methods read them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from kdforge.errors import ModelError
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import TeacherSpec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """How a teacher was placed, and what its weights take."""

    dtype: str  # fp32 | bf16 | fp16 | int8
    device: torch.device  # where its forward pass runs
    offloaded: bool  # weights kept on the CPU, streamed onto ``device`` block by block
    weight_bytes: int  # parameters and buffers as placed (int8: the packed linear weights)
    parameters: int  # as loaded, before any packing

    def describe(self) -> str:
        where = f"on cpu, streamed to {self.device}" if self.offloaded else f"on {self.device}"
        return f"{self.dtype} {where}"


def resolve_device(value: str, default: torch.device) -> torch.device:
    """``auto`` is ``default`` (the training device); ``cuda:N`` must name a GPU this machine has."""
    device = torch.device(default if value == "auto" else value)
    if value != "auto" and device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"teacher device {value!r}: CUDA is not available on this machine; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(
                f"teacher device {value!r}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 ...)"
            )
    if device.type == "cuda" and device.index is None:  # the current GPU, named so logs and figures agree
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def place_teacher(teacher: TextModel, spec: TeacherSpec | None, default: torch.device) -> Placement:
    """Put ``teacher`` in eval mode without gradients, in ``spec.dtype``, on ``spec.device`` (offloaded if asked).

    ``default`` is the training device, which ``device: auto`` means. Without a ``spec`` the teacher
    runs in fp32 on ``default``, its weights there.
    """
    spec = spec or TeacherSpec(model=teacher.name or "teacher")
    device = resolve_device(spec.device, default)
    before = teacher.placement
    if before is not None and (before.dtype, before.device, before.offloaded) == (spec.dtype, device, spec.offload):
        return before  # placed by an earlier stage or run: nothing to redo
    if before is not None and (before.dtype != "fp32" or before.offloaded):
        raise ModelError(
            f"teacher {spec.model!r} already runs {before.describe()}, which cannot be undone; "
            "load it again to place it otherwise"
        )
    parameters = teacher.num_parameters()
    teacher.eval().requires_grad_(False)
    if spec.dtype == "int8":
        if device.type != "cpu":
            raise ModelError(
                f"teacher {spec.model!r}: dtype int8 (dynamic quantization) runs on the CPU only, and device "
                f"{spec.device} is {device}; set teacher.device: cpu, or use bf16/fp16 on the GPU"
            )
        teacher.to("cpu")
        with warnings.catch_warnings():  # torch.ao's deprecation notices point at torchao; this API still works
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(teacher.hf, {nn.Linear}, dtype=torch.qint8, inplace=True)
    elif spec.dtype != "fp32":
        teacher.hf.to(DTYPES[spec.dtype])
    if spec.offload:
        from accelerate import cpu_offload

        teacher.to("cpu")
        cpu_offload(teacher.hf, execution_device=device)
    else:
        teacher.to(device)
    placement = Placement(spec.dtype, device, spec.offload, weight_bytes(teacher), parameters)
    teacher.placement = placement
    return placement


def weight_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, where they are kept (offloaded ones included)."""
    total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    for module in model.modules():  # int8 linear layers keep packed weights outside parameters()
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            weight, bias = module._weight_bias()
            total += weight.numel() * weight.element_size()
            total += bias.numel() * bias.element_size() if bias is not None else 0
    return total


def memory_line(teachers: list[TextModel], student: TextModel) -> str:
    """One log line: what the teachers' and the student's weights take, and CUDA's allocation."""
    names = ["teacher"] if len(teachers) == 1 else [f"teacher {i}" for i in range(len(teachers))]
    models = [*zip(names, teachers, strict=True), ("student", student)]
    parts = [f"{name} {_size(_weights(model))} ({_where(model)})" for name, model in models]
    devices = {model.device for _, model in models}
    line = "memory: " + ", ".join(parts)
    for device in sorted((d for d in devices if d.type == "cuda"), key=str):
        line += f"; {device} allocated {_size(torch.cuda.memory_allocated(device))}"
    return line


def _weights(model: TextModel) -> int:
    return model.placement.weight_bytes if model.placement is not None else weight_bytes(model)


def _where(model: TextModel) -> str:
    if model.placement is not None:
        return model.placement.describe()
    dtype = next(model.hf.parameters()).dtype
    name = next((k for k, v in DTYPES.items() if v == dtype), str(dtype).removeprefix("torch."))
    return f"{name} on {model.device}"


def _size(count: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
