"""BERT-of-Theseus: each student block replaces a group of teacher blocks, at random, in one hybrid model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.func import functional_call

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.ce import ce_loss
from kdforge.models import internals
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at

#: p reaches 1 at two thirds of the stage; the last third is successor fine-tuning.
DEFAULT_RATE = Schedule(schedule="linear", start=0.3, end=1.35)


def replacement_rate(rate: float | Schedule, k: float | None, step: int, progress: float) -> float:
    """The probability ``p`` that a successor is used: ``min(1, k t + b)`` (Eq. 4), or ``min(1, rate(progress))``."""
    p = k * step + float(rate) if k is not None else value_at(rate, progress)
    return min(1.0, max(0.0, p))


def draw_successors(count: int, p: float, generator: torch.Generator) -> list[bool]:
    """``r_i ~ Bernoulli(p)`` for each of the ``count`` modules (Eq. 1); ``True`` uses the successor."""
    return (torch.rand(count, generator=generator) < p).tolist()


def predecessor_groups(teacher_layers: int, student_layers: int) -> list[range]:
    """Teacher blocks ``[i k, (i + 1) k)`` form predecessor module ``i`` (``k = N / M``)."""
    size = teacher_layers // student_layers
    return [range(i * size, (i + 1) * size) for i in range(student_layers)]


@contextmanager
def hybrid(student_hf: nn.Module, teacher_hf: nn.Module, successors: list[bool]) -> Iterator[None]:
    """Inside the ``with`` statement, student block ``i`` gives way to its teacher group unless ``successors[i]``.

    ``y_{i+1} = r_i scc_i(y_i) + (1 - r_i) prd_i(y_i)`` (Eq. 2): a forward hook hands the block's
    input to the teacher blocks of its group and returns their output instead.
    """
    _, teacher_blocks = internals.block_list(teacher_hf)
    groups = predecessor_groups(len(teacher_blocks), len(successors))

    def predecessor(group: range):
        def run(_output: Tensor, args: tuple, kwargs: dict) -> Tensor:
            x = args[0] if args else kwargs["hidden_states"]
            for j in group:
                x = internals.call_block(teacher_blocks[j], x, args, kwargs)
            return x

        return run

    rewrites = {i: predecessor(groups[i]) for i, used in enumerate(successors) if not used}
    with internals.rewrite_blocks(student_hf, rewrites):
        yield


@register_method("theseus")
class Theseus(Method):
    """Progressive module replacing: the hybrid of teacher and student blocks trains on the task loss.

    Xu et al., "BERT-of-Theseus: Compressing BERT by Progressive Module Replacing", arXiv 2002.02925,
    Sec. 3: the teacher's N blocks form M consecutive predecessor modules of N/M blocks, one per
    student block (successor). Each step draws ``r_i ~ Bernoulli(p)`` per module (Eq. 1) and runs
    ``y_{i+1} = r_i scc_i(y_i) + (1 - r_i) prd_i(y_i)`` (Eq. 2); the loss is the hybrid's cross-entropy
    on the labels (Eq. 3), with no distillation term. The replacing rate follows the curriculum
    ``p_t = min(1, k t + b)`` (Eq. 4, ``k`` per optimizer step, ``b = rate``) or, without ``k``,
    ``min(1, rate)`` with ``rate`` a schedule over the stage: the default reaches 1 at two thirds
    of the stage, and from there the student trains alone (successor fine-tuning). As in the
    reference code only the successor blocks learn (``train: successors``); the embeddings and
    head stay as they are, which are the teacher's own when the student was cut from it
    (``init: teacher``). ``train: student`` also trains them (GKD's variant). The predecessors are
    frozen; gradients pass through them to earlier successors. Drawn once per optimizer step, the
    same on every process. Needs a classifier student of the teacher's architecture and width,
    with a teacher depth divisible by the student's.
    """

    needs = frozenset()
    needs_labels = True
    paper = "arXiv:2002.02925"
    summary = "student blocks replace groups of teacher blocks at a rate rising to 1; task loss"

    class Args(MethodArgs):
        rate: float | Schedule = Field(default=DEFAULT_RATE, validate_default=False)
        k: float | None = Field(None, ge=0.0)
        train: Literal["successors", "student"] = "successors"

        @model_validator(mode="after")
        def _check(self):
            if self.k is not None and isinstance(self.rate, Schedule):
                raise ValueError("with k (p = min(1, k * step + rate)) the rate must be a number, not a schedule")
            if isinstance(self.rate, float) and not 0.0 <= self.rate <= 1.0:
                raise ValueError(f"rate must be a probability in [0, 1], got {self.rate}")
            return self

    def setup(self, pair: Pair) -> None:
        t, s = pair.teacher, pair.student
        if t is None:
            raise IncompatibleError("theseus replaces student blocks with teacher blocks, so it needs a teacher")
        if s.kind != "classifier":
            raise IncompatibleError("theseus trains the hybrid on the labels, so it needs a classifier student")
        if s.num_heads == 0:
            raise IncompatibleError("theseus swaps teacher blocks into the student, so it needs a transformer student")
        if t.hidden_size != s.hidden_size:
            raise IncompatibleError(
                f"theseus swaps teacher and student blocks, so their widths must agree ({t.hidden_size} vs "
                f"{s.hidden_size})"
            )
        if t.num_layers % s.num_layers:
            raise IncompatibleError(
                f"theseus replaces groups of {t.num_layers} / {s.num_layers} teacher blocks, but {t.num_layers} is "
                f"not divisible by {s.num_layers}; choose a student depth that divides the teacher's"
            )
        if self.args.train == "successors" and s.teacher_blocks is None:
            raise IncompatibleError(
                "theseus with train: successors keeps the student's embeddings and head, which fits a student cut "
                "from the teacher (init: teacher); set train: student to train them too"
            )

    def bind(self, student: nn.Module, teachers: list[nn.Module]) -> None:
        teacher = teachers[self.teacher_index]
        _, s_blocks = internals.block_list(student.hf)
        _, t_blocks = internals.block_list(teacher.hf)
        if type(s_blocks[0]) is not type(t_blocks[0]):
            raise IncompatibleError(
                f"theseus swaps blocks, but the student's are {type(s_blocks[0]).__name__} and the teacher's "
                f"{type(t_blocks[0]).__name__}"
            )
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "student", student)  # not a submodule: checkpoints hold the student once
        object.__setattr__(self, "teacher", teacher)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if batch.labels is None:
            raise IncompatibleError("theseus needs labels, but the training data has none")
        p = replacement_rate(self.args.rate, self.args.k, batch.step, batch.progress) if self.training else 1.0
        generator = torch.Generator().manual_seed(batch.seed * 1_000_003 + batch.step)
        successors = draw_successors(self.student.num_layers, p, generator)
        if all(successors) and self.args.train == "student":
            return ce_loss(student.require("logits", "theseus"), batch.labels)  # the hybrid is the student
        return ce_loss(self.hybrid_logits(batch.student_inputs, successors), batch.labels)

    def hybrid_logits(self, inputs: dict[str, Tensor], successors: list[bool]) -> Tensor:
        """The hybrid model's logits; only successor blocks (and, with ``train: student``, the rest) get gradients."""
        hf = self.student.hf
        if self.teacher.device != self.student.device:
            self.teacher.to(self.student.device)
        params = None
        if self.args.train == "successors":
            prefix = internals.block_list(hf)[0] + "."
            params = {n: p.detach() for n, p in hf.named_parameters() if not n.startswith(prefix)}
        with hybrid(hf, self.teacher.hf, successors):
            out = hf(**inputs) if params is None else functional_call(hf, params, args=(), kwargs=inputs)
        return out.logits
