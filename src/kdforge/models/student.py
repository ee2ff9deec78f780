"""Build a student from its teacher (or a given model): keep some blocks, optionally narrow it,
shrink its vocabulary, copy what fits.

The student is an instance of the source's own HF class with a smaller config, so it
exports with ``save_pretrained`` and loads anywhere ``transformers`` does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kdforge.errors import ModelError
from kdforge.models import internals
from kdforge.models.text_model import TextModel
from kdforge.models.vocabulary import compress_vocabulary
from kdforge.recipe.schema import StudentSpec

_HEADS_KEYS = ("num_attention_heads", "n_head", "n_heads")
_WIDTH_KEYS = ("hidden_size", "n_embd", "dim")
_FFN_KEYS = ("intermediate_size", "n_inner", "hidden_dim")


@dataclass
class BuildReport:
    """What happened to the student's weights, for the run log."""

    kept_blocks: list[int]
    copied: int
    fresh: int
    source: str = "teacher"
    vocabulary: tuple[int, int] | None = None  # (kept, of) tokens when the vocabulary was compressed

    def describe(self) -> str:
        text = (
            f"kept {self.source} blocks {self.kept_blocks}; {self.copied} tensors copied from the {self.source}, "
            f"{self.fresh} freshly initialised"
        )
        if self.vocabulary is not None:
            text += f"; vocabulary {self.vocabulary[0]:,} of {self.vocabulary[1]:,} tokens"
        return text


def pick_layers(teacher_layers: int, count: int) -> list[int]:
    """``count`` block indices spread evenly over the teacher, always keeping the last block."""
    if count > teacher_layers:
        raise ModelError(f"student.num_layers is {count} but the teacher has only {teacher_layers} blocks")
    if count == 1:
        return [teacher_layers - 1]
    return [int(round(x)) for x in np.linspace(0, teacher_layers - 1, count)]


def build_student(
    teacher: TextModel,
    spec: StudentSpec,
    texts: Sequence[str] | None = None,
    from_teacher: bool = True,
) -> tuple[TextModel, BuildReport]:
    """A student cut from ``teacher`` as ``spec`` says.

    ``teacher`` is the model cut: the stage's teacher, or (``from_teacher=False``) the model
    ``spec.model`` names, loaded by the caller. ``texts`` (the training text) are needed when
    ``spec.vocabulary`` compresses the vocabulary: they decide which tokens are frequent.
    """
    if spec.pqrnn is not None:
        from kdforge.models.pqrnn import build_pqrnn

        return build_pqrnn(teacher, spec)
    if spec.static is not None:
        from kdforge.models.static import build_static

        return build_static(teacher, spec, texts)
    source = "teacher" if from_teacher else "model"
    total = teacher.num_layers
    if spec.layers is not None:
        bad = [i for i in spec.layers if i >= total]
        if bad:
            raise ModelError(f"student.layers: {bad} out of range; the {source} has blocks 0..{total - 1}")
        layers = list(spec.layers)
    else:
        layers = pick_layers(total, spec.num_layers or (max(1, total // 2) if from_teacher else total))

    config = copy.deepcopy(teacher.hf.config)
    config.num_hidden_layers = len(layers)
    _set_width(config, spec)
    for key, value in (spec.config or {}).items():
        setattr(config, key, value)

    torch.manual_seed(0)  # fresh tensors are the same on every run
    hf = type(teacher.hf)(config)
    report = BuildReport(kept_blocks=layers, copied=0, fresh=0)
    if spec.init == "teacher":
        report = _copy_weights(teacher.hf, hf, layers)
    else:
        report.fresh = len(hf.state_dict())
    report.source = source
    tokenizer = copy.deepcopy(teacher.tokenizer)
    if spec.vocabulary is not None:
        if texts is None:
            raise ModelError("student.vocabulary needs the training text to count token frequencies")
        size = len(tokenizer)
        tokenizer = compress_vocabulary(hf, tokenizer, texts, spec.vocabulary.keep, spec.vocabulary.multiple_of)
        report.vocabulary = (len(tokenizer), size)
    hf.eval()
    student = TextModel(
        hf,
        tokenizer,
        teacher.kind,
        pooling=teacher.pooling,
        normalize=teacher.normalize,
        max_length=teacher.max_length,
        name=f"student of {teacher.name}",
        teacher_blocks=_teacher_blocks(teacher, layers, from_teacher) if spec.init == "teacher" else None,
    )
    return student, report


def _teacher_blocks(source: TextModel, layers: list[int], from_teacher: bool) -> list[int] | None:
    """The teacher blocks the student's blocks come from (the default layer mapping), when known."""
    if from_teacher:
        return layers
    if source.teacher_blocks is not None:  # a student of a student: compose the two cuts
        return [source.teacher_blocks[i] for i in layers]
    return None


def _set_width(config, spec: StudentSpec) -> None:
    width_key = next((k for k in _WIDTH_KEYS if isinstance(getattr(config, k, None), int)), None)
    heads_key = next((k for k in _HEADS_KEYS if isinstance(getattr(config, k, None), int)), None)
    ffn_key = next((k for k in _FFN_KEYS if isinstance(getattr(config, k, None), int)), None)
    if spec.hidden_size is not None:
        if width_key is None or heads_key is None:
            raise ModelError(f"cannot change the width of a {type(config).__name__}")
        old_width, old_heads = getattr(config, width_key), getattr(config, heads_key)
        head_dim = old_width // old_heads
        setattr(config, width_key, spec.hidden_size)
        if spec.num_attention_heads is None:
            setattr(config, heads_key, max(1, spec.hidden_size // head_dim))
        if spec.intermediate_size is None and ffn_key is not None:
            ratio = getattr(config, ffn_key) / old_width
            setattr(config, ffn_key, int(spec.hidden_size * ratio))
    if spec.num_attention_heads is not None:
        if heads_key is None:
            raise ModelError(f"cannot set the head count of a {type(config).__name__}")
        setattr(config, heads_key, spec.num_attention_heads)
    if spec.intermediate_size is not None:
        if ffn_key is None:
            raise ModelError(f"cannot set the feed-forward size of a {type(config).__name__}")
        setattr(config, ffn_key, spec.intermediate_size)
    width = getattr(config, width_key) if width_key else None
    heads = getattr(config, heads_key) if heads_key else None
    if width and heads and width % heads:
        raise ModelError(f"student hidden size {width} is not divisible by its {heads} attention heads")


def _copy_weights(teacher_hf, student_hf, layers: list[int]) -> BuildReport:
    prefix, _ = internals.block_list(student_hf)
    block = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    source = teacher_hf.state_dict()
    target = student_hf.state_dict()
    copied = fresh = 0
    for key, tensor in target.items():
        match = block.match(key)
        origin = f"{prefix}.{layers[int(match.group(1))]}.{match.group(2)}" if match else key
        value = source.get(origin)
        if value is not None and value.shape == tensor.shape:
            target[key] = value.clone()
            copied += 1
        else:
            fresh += 1
    student_hf.load_state_dict(target)
    return BuildReport(kept_blocks=layers, copied=copied, fresh=fresh)
