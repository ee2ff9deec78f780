"""Soft-target KD from a knowledge stage's sample store: the teacher's distributions, read, not recomputed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.kd import kd_loss
from kdforge.methods.retrikt import check_store_labels
from kdforge.models.views import Views

if TYPE_CHECKING:
    from kdforge.store.samples import SampleStore


@register_method("stored_kd")
class StoredKD(Method):
    """Hinton et al.'s KD (arXiv 1503.02531, Sec. 2: soft targets at temperature T, loss scaled by T^2)
    with the teacher's distribution ``p_T`` of each training row read from the sample store the stage
    trains on (``data.train: stage:NAME`` of a ``kind: knowledge`` stage), so no teacher runs.

    The store keeps ``p_T`` at T = 1; ``softmax(log p_T / T)`` is the teacher's distribution at T,
    exactly, so this is ``kd`` with the same targets at a fraction of the cost. It is plain KD on the
    same transfer set as ``retrikt``, without retrieval: RetriKT's baseline.
    """

    needs = frozenset({"logits"})
    needs_teacher = False
    uses_sample_store = True
    paper = "arXiv:1503.02531"
    summary = "soft-target KD from the teacher distributions a knowledge stage stored (no teacher runs)"

    class Args(MethodArgs):
        temperature: PositiveFloat = 1.0

    def __init__(self, args: MethodArgs | None = None, teacher: int = 0) -> None:
        super().__init__(args, teacher)
        self.log_probs: Tensor | None = None  # the teacher's logits up to a constant per row: log p_T

    def setup(self, pair: Pair) -> None:
        if pair.student.kind != "classifier":
            raise IncompatibleError(
                f"stored_kd reads class distributions: the student must be a classifier, not a {pair.student.kind}"
            )

    def attach_store(self, store: SampleStore, num_labels: int | None) -> None:
        check_store_labels(store, num_labels)
        self.log_probs = torch.log(store.probs.float().clamp_min(1e-12))  # once, not on every step

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if self.log_probs is None:
            raise IncompatibleError(
                "stored_kd trains on a sample store: set data.train to stage:NAME of a knowledge stage"
            )
        rows = batch.index.cpu()
        if int(rows.max()) >= len(self.log_probs):
            raise IncompatibleError(f"stored_kd: training row {int(rows.max())} is not in the sample store")
        return kd_loss(student.logits, self.log_probs[rows].to(student.logits.device), self.args.temperature)
