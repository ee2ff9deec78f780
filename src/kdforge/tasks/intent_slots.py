"""Joint intent detection and slot filling: one model gives a sentence's intent and each word's BIO tag."""

from __future__ import annotations

import datasets
import numpy as np
import torch

from kdforge.errors import DataError, ModelError
from kdforge.evaluate.metrics import joint_metrics, span_metrics
from kdforge.methods.base import TOKEN_LABELS, Batch
from kdforge.models.joint import placeholder_tags
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import DataSource, TaskSpec
from kdforge.tasks.base import Task, register_task
from kdforge.tasks.classification import Classification
from kdforge.tasks.token_classification import (
    TokenClassification,
    model_tags,
    preview,
    tagged_rows,
    word_passes,
    word_tags,
)


def model_slots(model: TextModel) -> list[str] | None:
    """The slot tags a joint model carries; ``None`` for the placeholders of a fresh head (``TAG_i``)."""
    names = list(model.config.slot_labels)
    return None if names == placeholder_tags(len(names)) else names


def predict_joint(
    model: TextModel, words: list[list[str]], intents: list[str], slots: list[str], batch_size: int = 64
) -> tuple[list[str], list[list[str]]]:
    """Each sentence's predicted intent and each word's tag (read at its first sub-token), in one pass."""
    out_intents = [""] * len(words)
    out_tags: list[list[str]] = [[] for _ in words]
    for chunk, starts, views in word_passes(model, words, frozenset({"logits", "token_logits"}), batch_size):
        intent_ids = views.logits.argmax(-1).cpu()
        tag_ids = views.token_logits.argmax(-1).cpu()
        for row, i in enumerate(chunk):
            out_intents[i] = intents[int(intent_ids[row])]
            out_tags[i] = word_tags(tag_ids[row], starts[row], len(words[i]), slots)
    return out_intents, out_tags


def _adopt(mine: list[str] | None, theirs: list[str] | None, count: int, what: str, field: str, name: str):
    """The task's names after meeting a teacher that predicts ``count`` outputs named ``theirs``."""
    if theirs is None:
        if mine is not None and len(mine) != count:
            raise ModelError(f"teacher {name!r} has {count} {what} but the task has {len(mine)}")
        return mine
    if mine is not None and mine != theirs:
        raise ModelError(
            f"teacher {name!r} predicts the {what} {preview(theirs)}, but the task's are {preview(mine)}; "
            f"give task.{field} in the teacher's order (or leave them out)"
        )
    return theirs


@register_task("intent_slots")
class IntentSlots(Task):
    """The intent of each sentence and a BIO tag per word, from one model with two heads (``kind: joint``).

    The joint-NLU setting of Chen et al., "BERT for Joint Intent Classification and Slot Filling"
    (arXiv 1902.10909): intent from the first token, each word's slot from its first sub-token, and
    a fine-tuning loss that sums the two cross-entropies (``ce`` on ``logits`` plus ``ce`` with
    ``view: token_logits``, the default methods of a finetune stage). Data: the ATIS/SNIPS layout
    (``seq.in`` words, ``seq.out`` tags, ``label`` intent), or JSONL rows with ``words``, ``tags``
    and ``label`` (or ``intent``). Intents are handled as ``classification`` handles labels
    (``task.labels``, else from the training data); tags as ``token_classification`` handles them
    (``task.slot_labels``, else from the data: ``O`` first), words aligned to sub-tokens the same
    way. In a distill stage both come from the teacher when the task names none. Metrics, x100:
    intent accuracy, slot span F1 (seqeval; with precision, recall and per-word accuracy) and exact
    match (intent and every tag right; the primary metric).
    """

    kind = "joint"
    default_metric = "exact_match"
    augments_own_batches = True  # token classification's collate: words change one for one, tags stay aligned

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.intents = Classification(TaskSpec(name="classification", labels=spec.labels, num_labels=spec.num_labels))
        self.slots = TokenClassification(TaskSpec(name="token_classification", labels=spec.slot_labels))

    @property
    def num_labels(self) -> int | None:
        return self.intents.num_labels

    @property
    def num_slots(self) -> int | None:
        return self.slots.num_labels

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        parts = [tagged_rows(source, "train") for source in sources]
        for rows, where in parts:
            missing = next((n for n, row in enumerate(rows, 1) if "label" not in row), None)
            if missing is not None:
                raise DataError(f"{where}: row {missing} has no intent (the label file); intent_slots trains on both")
        tags = self.slots.tag_ids(parts)
        self.intents.learn_labels([row["label"] for rows, _ in parts for row in rows])
        intents = [i for rows, where in parts for i in self.intents.label_ids([row["label"] for row in rows], where)]
        rows = [row for part, _ in parts for row in part]
        return datasets.Dataset.from_dict(
            {
                "text": [row["text"] for row in rows],
                "words": [row["words"] for row in rows],
                "tags": tags,
                "label": intents,
                "index": list(range(len(rows))),
            }
        )

    def has_targets(self, ds: datasets.Dataset) -> bool:
        return {"label", "tags"} <= set(ds.column_names)

    def collate(self, rows: list[dict], collator) -> Batch:
        """Token classification's batch (words tokenized per model, tags on each word's first sub-token),
        with the tags moved to ``extra[TOKEN_LABELS]`` and the intents as ``labels``."""
        batch = self.slots.collate(rows, collator)
        if batch.labels is not None:
            batch.extra[TOKEN_LABELS] = batch.labels
        batch.labels = torch.tensor([row["label"] for row in rows]) if "label" in rows[0] else None
        return batch

    def load_eval(self, source: DataSource, split: str) -> datasets.Dataset:
        rows, _ = tagged_rows(source, split)
        return datasets.Dataset.from_list(rows)

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        columns = ds.column_names
        return "tags" in columns and "label" in columns and None not in ds["tags"] and None not in ds["label"]

    def check_teacher(self, teacher: TextModel, name: str) -> None:
        """Only a joint model teaches both heads; its intents and tags become the task's, or must match them."""
        if teacher.kind != "joint":
            raise ModelError(
                f"teacher {name!r} is a {teacher.kind} model, but intent_slots needs a joint intent + slot model; "
                "fine-tune one first (a 'kind: finetune' stage with task intent_slots) and use stage:NAME"
            )
        self.intents.label_names = _adopt(
            self.intents.label_names, model_tags(teacher), teacher.num_labels, "intents", "labels", name
        )
        self.slots.label_names = _adopt(
            self.slots.label_names, model_slots(teacher), teacher.num_slots, "slot tags", "slot_labels", name
        )

    def configure(self, model: TextModel) -> None:
        self.intents.configure(model)
        if self.slots.label_names is not None:
            model.config.slot_labels = list(self.slots.label_names)

    def adopt_labels(self, model: TextModel) -> None:
        """For evaluating an existing joint model: take its intent and tag names where the task has none."""
        if model.kind != "joint":
            return
        self.intents.label_names = self.intents.label_names or model_tags(model)
        self.slots.label_names = self.slots.label_names or model_slots(model)

    def _names(self, model: TextModel, where: str) -> tuple[list[str], list[str]]:
        """The names of the model's intent and slot outputs: its own, else the task's."""
        if model.kind != "joint":
            raise ModelError(f"{where}: {model.name or 'the model'} is a {model.kind} model, not a joint one")
        intents = model_tags(model) or self.intents.label_names
        slots = model_slots(model) or self.slots.label_names
        if intents is None or len(intents) != model.num_labels:
            raise ModelError(f"{where}: cannot tell which intent each of the model's outputs is; set task.labels")
        if slots is None or len(slots) != model.num_slots:
            raise ModelError(f"{where}: cannot tell which tag each slot output is; set task.slot_labels")
        return intents, slots

    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        if not self.is_labelled(ds):
            raise DataError(f"{where}: evaluation needs an intent and tags for every sentence (label and seq.out)")
        intents, tags = predict_joint(model, list(ds["words"]), *self._names(model, where), batch_size)
        return joint_metrics(intents, list(ds["label"]), tags, list(ds["tags"]))

    def agreement(self, teacher: TextModel, student: TextModel, ds: datasets.Dataset | None) -> dict[str, float] | None:
        """How often the student predicts the teacher's intent, its tag per word, both per sentence, and
        the student's span F1 against the teacher's tags."""
        if ds is None or "words" not in ds.column_names:
            return None
        words = list(ds["words"])
        t_intents, t_tags = predict_joint(teacher, words, *self._names(teacher, "teacher"))
        s_intents, s_tags = predict_joint(student, words, *self._names(student, "student"))
        same = [a == b for a, b in zip(t_intents, s_intents, strict=True)]
        same_words = sum(a == b for t, s in zip(t_tags, s_tags, strict=True) for a, b in zip(t, s, strict=True))
        exact = [i and t == s for i, t, s in zip(same, t_tags, s_tags, strict=True)]
        return {
            "intent_agreement": float(np.mean(same) * 100),
            "slot_agreement": same_words / max(sum(len(w) for w in words), 1) * 100,
            "exact_match_vs_teacher": float(np.mean(exact) * 100),
            "slot_f1_vs_teacher": span_metrics(s_tags, t_tags)["f1"],
        }
