"""Sequence classification of single sentences or pairs: accuracy, F1 and MCC."""

from __future__ import annotations

import datasets
import torch

from kdforge.errors import DataError
from kdforge.evaluate.metrics import classification_metrics
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import DataSource
from kdforge.tasks.base import LabelledTask, register_task
from kdforge.tasks.data import load_source


@register_task("classification")
class Classification(LabelledTask):
    """Labels are read as written (``0``/``1`` or names such as ``entailment``).

    Names are mapped to ids by ``task.labels`` when given, else numerically when all labels
    are integers, else alphabetically; the mapping is stored in the model's config
    (``id2label``) so exported classifiers carry it.
    """

    kind = "classifier"
    default_metric = "accuracy"

    def learn_labels(self, values: list[str]) -> None:
        """Name the labels from the training data's values (in the order the class docstring gives)
        unless the task has names already."""
        if self.label_names is not None:
            return
        distinct = sorted(set(values))
        if all(v.lstrip("-").isdigit() for v in distinct):
            numbers = sorted({int(v) for v in distinct})
            if numbers[0] < 0:  # e.g. -1/1: keep numeric order
                self.label_names = [str(n) for n in numbers]
            else:
                count = max(self.spec.num_labels or 0, numbers[-1] + 1)
                self.label_names = [str(i) for i in range(count)]
        else:
            self.label_names = distinct
        if self.spec.num_labels and len(self.label_names) != self.spec.num_labels:
            raise DataError(
                f"task.num_labels is {self.spec.num_labels} but the training data has labels {', '.join(distinct)}"
            )

    def label_ids(self, values: list[str], where: str) -> list[int]:
        assert self.label_names is not None
        lookup = {name: i for i, name in enumerate(self.label_names)}
        try:
            return [lookup[v] for v in values]
        except KeyError as err:
            raise DataError(
                f"{where}: label {err.args[0]!r} is not one of the task's labels ({', '.join(self.label_names)})"
            ) from None

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        parts = [load_source(source, "train") for source in sources]
        for part, source in zip(parts, sources, strict=True):
            if "label" not in part.column_names:
                raise DataError(f"{source.describe()}: classification training data needs a label column")
        self.learn_labels([v for part in parts for v in part["label"] if v is not None])
        pairs = {"text_pair" in p.column_names for p in parts}
        if len(pairs) > 1:
            raise DataError("training sources mix single sentences and sentence pairs")
        columns: dict[str, list] = {"text": [], "label": []}
        if pairs == {True}:
            columns["text_pair"] = []
        for part, source in zip(parts, sources, strict=True):
            keep = [i for i, v in enumerate(part["label"]) if v is not None]
            columns["text"] += [part["text"][i] for i in keep]
            columns["label"] += self.label_ids([part["label"][i] for i in keep], source.describe())
            if "text_pair" in columns:
                columns["text_pair"] += [part["text_pair"][i] for i in keep]
        columns["index"] = list(range(len(columns["text"])))
        return datasets.Dataset.from_dict(columns)

    def adopt_labels(self, model: TextModel) -> None:
        """For evaluating an existing classifier: take its label names when the task has none."""
        if self.label_names is None and model.kind == "classifier":
            id2label = model.hf.config.id2label
            names = [str(id2label[i]) for i in range(len(id2label))]
            # transformers' placeholder names (LABEL_0, ...) mean "no names": labels are the ids
            default = names == [f"LABEL_{i}" for i in range(len(names))]
            self.label_names = [str(i) for i in range(len(names))] if default else names

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        return "label" in ds.column_names and None not in ds["label"]

    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        if not self.is_labelled(ds):
            raise DataError(f"{where}: evaluation needs a label on every row (is this an unlabelled test split?)")
        self.adopt_labels(model)
        gold = self.label_ids(ds["label"], where)
        pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
        logits = model.predict(ds["text"], pairs, batch_size)
        predicted = torch.argmax(logits, dim=-1).tolist()
        return classification_metrics(predicted, gold, logits.size(-1))
