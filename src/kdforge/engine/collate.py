"""Turn dataset rows into a ``Batch``: tokenize for the student (and the teacher if it differs).

A student whose vocabulary is a compressed copy of a teacher's (GLMD vocabulary compression)
reads that teacher's tokenization through the id map, so both see the same positions.
"""

from __future__ import annotations

import torch

from kdforge.methods.base import Batch
from kdforge.models.text_model import TextModel
from kdforge.models.vocabulary import VocabularyMap, vocabulary_map


def same_tokenizer(a: TextModel, b: TextModel) -> bool:
    """True when both models turn any text into the same ids (token-level methods need this)."""
    if a.special_tokens != b.special_tokens:  # a static-embedding student reads no [CLS]/[SEP]
        return False
    ta, tb = a.tokenizer, b.tokenizer
    if type(ta).__name__ != type(tb).__name__:
        return False
    if ta is tb:
        return True
    return ta.get_vocab() == tb.get_vocab() and getattr(ta, "do_lower_case", None) == getattr(tb, "do_lower_case", None)


def aligned(teacher: TextModel, student: TextModel) -> bool:
    """True when the student sees the teacher's token positions: same tokenizer, or a compressed copy."""
    if teacher.special_tokens != student.special_tokens:
        return False
    return same_tokenizer(teacher, student) or vocabulary_map(teacher.tokenizer, student.tokenizer) is not None


class Collator:
    """Dynamic padding per batch; one tokenization per distinct tokenizer among student and teachers."""

    def __init__(self, student: TextModel, teachers: list[TextModel], max_length: int | None = None, task=None) -> None:
        self.student = student
        self.task = task
        self.epoch = 0  # set by the trainer: per-epoch randomness (masking) stays reproducible
        self.augmenter = None  # set by the trainer when training.augment is on (tasks/augment.py)
        self.teachers = teachers
        self.shared = [same_tokenizer(student, teacher) for teacher in teachers]
        # With no teacher sharing its tokenizer, a compressed student reads the first compatible
        # teacher's ids through its vocabulary map; ``shared`` then marks the teachers that share
        # that teacher's tokenization.
        self.source: int | None = None
        self.vocabulary: VocabularyMap | None = None
        if not any(self.shared) and student.special_tokens:
            for position, teacher in enumerate(teachers):
                self.vocabulary = vocabulary_map(teacher.tokenizer, student.tokenizer)
                if self.vocabulary is not None:
                    self.source = position
                    self.shared = [i == position or same_tokenizer(t, teacher) for i, t in enumerate(teachers)]
                    break
        lengths = [student.max_length, *(t.max_length for t in teachers), max_length]
        self.max_length = min(x for x in lengths if x)

    def _tokenize(self, model: TextModel, rows: list[dict]) -> dict[str, torch.Tensor]:
        pairs = [r["text_pair"] for r in rows] if "text_pair" in rows[0] else None
        encoded = model.tokenizer(
            [r["text"] for r in rows],
            pairs,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=model.special_tokens,
            return_tensors="pt",
        )
        return dict(encoded)

    def __call__(self, rows: list[dict]) -> Batch:
        custom = self.task.collate(rows, self) if self.task is not None else None
        if custom is not None:  # rows the task lays out itself (ranking: a query and its passages)
            return custom
        if self.augmenter is not None:
            rows = self.augmenter(rows, self.epoch)
        # A compressed student starts from its source teacher's ids, mapped after the task's corruption.
        reader = self.student if self.source is None else self.teachers[self.source]
        student_inputs = self._tokenize(reader, rows)
        teacher_inputs = [
            student_inputs if shared else self._tokenize(teacher, rows)
            for teacher, shared in zip(self.teachers, self.shared, strict=True)
        ]
        labels = torch.tensor([r["label"] for r in rows]) if "label" in rows[0] else None
        scores = torch.tensor([r["score"] for r in rows], dtype=torch.float) if "score" in rows[0] else None
        batch = Batch(
            student_inputs=student_inputs,
            teacher_inputs=teacher_inputs,
            index=torch.tensor([r["index"] for r in rows]),
            labels=labels,
            scores=scores,
        )
        if self.task:
            batch = self.task.prepare_batch(batch, reader.tokenizer, self.epoch)
        if self.vocabulary is not None:
            batch = self._to_student_vocabulary(batch)
        return batch

    def _to_student_vocabulary(self, batch: Batch) -> Batch:
        """Student inputs (and token targets) in the student's ids; teachers keep theirs."""
        assert self.vocabulary is not None
        ids = batch.student_inputs["input_ids"]
        batch.student_inputs = {**batch.student_inputs, "input_ids": self.vocabulary.student_ids(ids)}
        if batch.labels is not None and batch.labels.shape == ids.shape:  # MLM / LM targets are token ids
            batch.labels = self.vocabulary.student_ids(batch.labels)
        return batch
