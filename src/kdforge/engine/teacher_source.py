"""Where teacher views come from during training: a live forward pass, or memory.

A teacher in eval mode gives the same sentence-level outputs (logits, embeddings) for the
same example in every epoch, so after the first epoch they are read from memory instead of
recomputed. Token-level views (hidden states, attention, per-token logits, which also
change with each epoch's masking and each batch's padding) stay live here; the persistent
knowledge store covers them.

The teacher may run on another device or in lower precision (kdforge.models.placement): its
inputs go to its device, and its views come back to the batch's device in float32, so methods
always compare float32 targets.

For a student with a compressed vocabulary, the teacher's token logits are cut to the ids the
student kept (GLMD vocabulary compression), so methods compare distributions over one vocabulary.
"""

from __future__ import annotations

import time

import torch

from kdforge.methods.base import Batch
from kdforge.models.text_model import PER_TOKEN, TextModel
from kdforge.models.views import SEQUENCE_VIEWS, Views
from kdforge.models.vocabulary import VocabularyMap


class TeacherSource:
    """Gives the teacher's ``Views`` for a batch, computing only the ``needs``."""

    def __init__(
        self,
        teacher: TextModel,
        needs: frozenset[str],
        cache: bool,
        position: int = 0,
        vocabulary: VocabularyMap | None = None,
    ) -> None:
        self.teacher = teacher
        self.position = position  # which of the batch's teacher inputs belong to this teacher
        self.needs = needs
        self.vocabulary = vocabulary  # the student's compressed vocabulary, when it has one
        token_logits = teacher.kind in PER_TOKEN
        self.cache_enabled = cache and bool(needs) and needs <= SEQUENCE_VIEWS and not token_logits
        self._memory: dict[str, dict[int, torch.Tensor]] = {name: {} for name in needs}
        self.hits = 0
        self.misses = 0
        self.seconds = 0.0  # spent in live teacher forwards

    @torch.no_grad()
    def __call__(self, batch: Batch) -> Views:
        inputs = batch.teacher_inputs[self.position]
        # One id per teacher row: the example's, or one per (query, passage) pair in ranking batches.
        ids = (batch.index if batch.teacher_index is None else batch.teacher_index).tolist()
        if self.cache_enabled and all(i in self._memory[n] for n in self.needs for i in ids):
            self.hits += 1
            views = Views(attention_mask=inputs["attention_mask"])
            device = inputs["attention_mask"].device
            for name in self.needs:
                setattr(views, name, torch.stack([self._memory[name][i] for i in ids]).to(device))
            return views
        self.misses += 1
        started = time.perf_counter()
        device = inputs["attention_mask"].device
        teacher_device = self.teacher.device
        if teacher_device != device:
            inputs = {k: v.to(teacher_device) for k, v in inputs.items()}
        views = self.teacher(inputs, self.needs).detach()
        self.seconds += time.perf_counter() - started
        if self.vocabulary is not None and views.logits is not None and views.logits.dim() == 3:
            views.logits = self.vocabulary.teacher_logits(views.logits)  # cut before the float32 copy
        views = views.to(device, torch.float32)
        if self.cache_enabled:
            for name in self.needs:
                rows = getattr(views, name)
                for row, i in enumerate(ids):
                    self._memory[name][i] = rows[row].clone()
        return views
