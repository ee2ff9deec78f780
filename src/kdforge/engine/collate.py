"""Turn dataset rows into a ``Batch``: tokenize for the student (and the teacher if it differs)."""

from __future__ import annotations

import torch

from kdforge.methods.base import Batch
from kdforge.models.text_model import TextModel


def same_tokenizer(a: TextModel, b: TextModel) -> bool:
    """True when both models turn any text into the same ids (token-level methods need this)."""
    ta, tb = a.tokenizer, b.tokenizer
    if type(ta).__name__ != type(tb).__name__:
        return False
    if ta is tb:
        return True
    return ta.get_vocab() == tb.get_vocab() and getattr(ta, "do_lower_case", None) == getattr(tb, "do_lower_case", None)


class Collator:
    """Dynamic padding per batch; one tokenization per distinct tokenizer among student and teachers."""

    def __init__(self, student: TextModel, teachers: list[TextModel], max_length: int | None = None, task=None) -> None:
        self.student = student
        self.task = task
        self.epoch = 0  # set by the trainer: per-epoch randomness (masking) stays reproducible
        self.teachers = teachers
        self.shared = [same_tokenizer(student, teacher) for teacher in teachers]
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
            return_tensors="pt",
        )
        return dict(encoded)

    def __call__(self, rows: list[dict]) -> Batch:
        student_inputs = self._tokenize(self.student, rows)
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
        return self.task.prepare_batch(batch, self.student.tokenizer, self.epoch) if self.task else batch
