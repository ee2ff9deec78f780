"""The task interface: which model kind it trains, how it reads data, how it scores a model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import datasets

from kdforge.methods.base import Batch
from kdforge.models.text_model import Kind, TextModel
from kdforge.recipe.schema import DataSource, TaskSpec
from kdforge.registry import Registry
from kdforge.tasks.data import load_source


class Task(ABC):
    kind: ClassVar[Kind]
    teacher_kind: ClassVar[Kind | None] = None  # the teachers' kind when it is not the student's (ranking)
    default_metric: ClassVar[str]
    registered_name: ClassVar[str]
    # The teacher's inputs change from epoch to epoch (e.g. masking): no store can hold its outputs.
    inputs_vary: ClassVar[bool] = False
    # Its own ``collate`` applies ``collator.augmenter`` (otherwise training.augment is refused for it).
    augments_own_batches: ClassVar[bool] = False

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @property
    def primary_metric(self) -> str:
        return self.spec.metric or self.default_metric

    @property
    def num_labels(self) -> int | None:
        return None

    @property
    def num_slots(self) -> int | None:
        """Slot tags of a joint model's second head (``intent_slots``); ``None`` for one-head tasks."""
        return None

    @abstractmethod
    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        """Columns ``text`` [, ``text_pair``, ``label``] and ``index`` (0..N-1)."""

    def has_targets(self, ds: datasets.Dataset) -> bool:
        """Whether the training data gives methods that need labels something to learn from."""
        return "label" in ds.column_names

    @abstractmethod
    def is_labelled(self, ds: datasets.Dataset) -> bool:
        """Whether every row carries the gold value this task scores against."""

    @abstractmethod
    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        """Metrics of ``model`` on a labelled dataset (from ``load_eval``), x100."""

    def prepare_batch(self, batch: Batch, tokenizer, epoch: int) -> Batch:
        """Task-specific inputs and targets made per batch (e.g. masked tokens); none by default."""
        return batch

    def collate(self, rows: list[dict], collator) -> Batch | None:
        """The batch of rows that are not one text (pair) per model; ``None``: the ``Collator``'s own."""
        return None

    def load_eval(self, source: DataSource, split: str) -> datasets.Dataset:
        """An evaluation split in the layout ``evaluate`` reads."""
        return load_source(source, split)

    def check_teacher(self, teacher: TextModel, name: str) -> None:
        """Raise ``ModelError`` when ``teacher`` cannot teach this task (before any training)."""

    def agreement(self, teacher: TextModel, student: TextModel, ds: datasets.Dataset | None) -> dict[str, float] | None:
        """Teacher-student agreement on an evaluation split, where the generic measure does not apply."""
        return None

    def configure(self, model: TextModel) -> None:
        """Record task facts (label names) in the model so exported folders carry them."""


class LabelledTask(Task):
    """A task whose model predicts named labels (per sentence or per token): the names come from
    ``task.labels`` or are learned from the training data, and exported models carry them
    (``id2label`` / ``label2id`` in their config)."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.label_names: list[str] | None = list(spec.labels) if spec.labels else None

    @property
    def num_labels(self) -> int | None:
        if self.label_names is not None:
            return len(self.label_names)
        return self.spec.num_labels

    def configure(self, model: TextModel) -> None:
        if self.label_names is None:
            return
        model.hf.config.id2label = dict(enumerate(self.label_names))
        model.hf.config.label2id = {name: i for i, name in enumerate(self.label_names)}


TASKS: Registry[type[Task]] = Registry("task")
register_task = TASKS.register
