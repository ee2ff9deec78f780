"""The method interface and its registry.

A method is a loss over teacher and student ``Views``. It declares the views it needs; the
engine computes exactly those (from a live teacher or a cache) and calls the method. A new
method is one file with one ``@register_method("name")`` class; its arguments are a pydantic
``Args`` model, so recipe typos are caught before training.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.models.views import ALL_VIEWS, Views
from kdforge.registry import Registry


@dataclass(frozen=True)
class ModelShape:
    """What a method may check about a model before training starts."""

    kind: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_labels: int | None
    embedding_size: int
    teacher_blocks: tuple[int, ...] | None = None  # for a student cut from the teacher
    output_size: int | None = None  # classes of a classifier, vocabulary of a language model
    num_slots: int | None = None  # slot tags of a joint intent + slot model's second head (token_logits)
    views: frozenset[str] = ALL_VIEWS  # what the model can give (a pQRNN: no attention; static: embeddings)

    @property
    def prediction_size(self) -> int | None:
        """How many classes or vocabulary entries the model's logits score."""
        return self.output_size if self.output_size is not None else self.num_labels


@dataclass(frozen=True)
class Pair:
    """The teacher a method reads (``teacher``), all of the stage's teachers, and the student."""

    teacher: ModelShape | None
    student: ModelShape
    same_tokenizer: bool
    teachers: tuple[ModelShape, ...] = ()


#: ``Batch.extra`` key of the per-token targets of a joint model's second head (``token_logits``):
#: ``[B, T]`` slot-tag ids at each word's first sub-token, ``-100`` elsewhere (tasks/intent_slots.py).
TOKEN_LABELS = "token_labels"


@dataclass
class Batch:
    """One training batch: tokenized inputs for each model, targets and example ids."""

    student_inputs: dict[str, Tensor]
    teacher_inputs: list[dict[str, Tensor]]  # one per teacher (the same dict when tokenizers agree)
    index: Tensor
    labels: Tensor | None = None
    scores: Tensor | None = None
    # Where training stands, for methods that follow a schedule or draw per-step randomness.
    step: int = 0
    total_steps: int = 1
    epoch: int = 0
    seed: int = 0
    # Ranking (tasks/ranking.py): each query's candidate passages, which the student encodes apart
    # from the queries (``Views.candidates``); the ids of the teacher's rows (one per query-passage
    # pair) for its cache; per-row token facts that methods read (e.g. which tokens are the query's).
    candidate_inputs: dict[str, Tensor] | None = None
    teacher_index: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Fraction of the stage's optimizer steps already taken, in [0, 1)."""
        return self.step / max(1, self.total_steps)

    def to(self, device, **kwargs) -> Batch:
        def move(d):
            return {k: v.to(device, **kwargs) for k, v in d.items()}

        moved = {id(d): move(d) for d in [self.student_inputs, *self.teacher_inputs]}  # shared dicts stay shared
        return Batch(
            student_inputs=moved[id(self.student_inputs)],
            teacher_inputs=[moved[id(d)] for d in self.teacher_inputs],
            index=self.index,
            labels=None if self.labels is None else self.labels.to(device, **kwargs),
            scores=None if self.scores is None else self.scores.to(device, **kwargs),
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.epoch,
            seed=self.seed,
            candidate_inputs=None if self.candidate_inputs is None else move(self.candidate_inputs),
            teacher_index=self.teacher_index,
            extra={k: v.to(device, **kwargs) for k, v in self.extra.items()},
        )


class MethodArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method(nn.Module, ABC):
    """Base class: subclasses set ``needs``, ``paper``, ``summary`` and implement ``forward``."""

    needs: ClassVar[frozenset[str]] = frozenset()
    needs_teacher: ClassVar[bool] = True
    multi_teacher: ClassVar[bool] = False  # forward() receives the list of every teacher's views
    second_view: ClassVar[str | None] = None  # "dropout" or an augmentation: the student also runs on it
    needs_labels: ClassVar[bool] = False
    token_level: ClassVar[bool] = False  # compares token positions: ``check_pair`` requires one tokenization
    # Trains on a knowledge stage's sample store and retrieves from it (retrikt): the pipeline hands it the
    # store with ``attach_store(store, num_labels)`` before training.
    uses_sample_store: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    registered_name: ClassVar[str]
    Args: ClassVar[type[MethodArgs]] = MethodArgs

    def __init__(self, args: MethodArgs | None = None, teacher: int = 0) -> None:
        super().__init__()
        self.args = args if args is not None else self.Args()
        self.teacher_index = teacher  # which teacher a single-teacher method reads

    @classmethod
    def parse_args(cls, raw: dict[str, Any]) -> MethodArgs:
        try:
            return cls.Args.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            if first["type"] == "extra_forbidden":
                valid = ", ".join(["name", "weight", *cls.Args.model_fields]) or "none"
                raise ValueError(f"method {cls.registered_name!r} has no argument {field!r}; valid: {valid}") from None
            raise ValueError(f"method {cls.registered_name!r}, {field}: {first['msg']}") from None

    def setup(self, pair: Pair) -> None:
        """Check the pair (raise ``IncompatibleError``) and create any learned parameters."""

    def check_pair(self, pair: Pair) -> None:
        """The checks many methods share, first thing in their ``setup``: a teacher to read, and for a
        ``token_level`` method the same token positions in teacher and student."""
        if self.needs_teacher and pair.teacher is None:
            raise IncompatibleError(f"{self.registered_name} needs a teacher")
        if self.token_level and not pair.same_tokenizer:
            raise IncompatibleError(
                f"{self.registered_name} compares token positions, but teacher and student tokenize differently"
            )

    def alone_because(self) -> str | None:
        """Why this method, as configured, must be its stage's only method (None: it can share a stage)."""
        return None

    def bind(self, student: nn.Module, teachers: list[nn.Module]) -> None:
        """Called once before training with the models themselves.

        Only methods that must run a model in a way ``Views`` cannot express use it (Theseus's
        hybrid of teacher and student blocks, DIITO's interchange interventions). Keep the
        references out of this module's parameters (``object.__setattr__``), or the student
        would be saved twice in checkpoints.
        """

    def augment(self, inputs: dict[str, Tensor], batch: Batch, tokenizer) -> dict[str, Tensor]:
        """The inputs of the second view (``second_view``); the same inputs by default (dropout only)."""
        return inputs

    def teacher_needs(self) -> frozenset[str]:
        return self.needs if self.needs_teacher else frozenset()

    def student_needs(self) -> frozenset[str]:
        return self.needs

    @abstractmethod
    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        """The method's loss for one batch (a scalar)."""


METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register
