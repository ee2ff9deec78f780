"""RetriKT: teach a tiny student to retrieve its teacher's knowledge from a sample store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import RETRIEVAL_KEYS, Views

if TYPE_CHECKING:  # both import the store package, which imports this one
    from kdforge.models.retrieval import RetrievalHead
    from kdforge.store.samples import SampleStore


def retrikt_loss(log_mixture: Tensor, teacher_probs: Tensor, keep: Tensor | None = None) -> Tensor:
    """``KL(p_T || p)`` averaged over the batch (over its ``keep`` rows), ``p`` the student's mixture
    with what it retrieved."""
    teacher = teacher_probs.float()
    log_teacher = torch.log(teacher.clamp_min(1e-12))
    rows = (teacher * (log_teacher - log_mixture)).sum(-1)
    if keep is None:
        return rows.mean()
    keep = keep.to(rows.dtype)
    return (rows * keep).sum() / keep.sum().clamp_min(1.0)  # no kept row: 0, still on the graph


def check_store_labels(store: SampleStore, num_labels: int | None) -> None:
    """A store read as a stage's teacher must hold distributions over the task's labels."""
    if num_labels is not None and len(store.labels) != num_labels:
        raise IncompatibleError(
            f"the sample store {store.folder} holds distributions over {len(store.labels)} labels, "
            f"the task has {num_labels}"
        )


@register_method("retrikt")
class RetriKT(Method):
    """Retrieval-based knowledge transfer: the student predicts by mixing its own distribution with the
    teacher distributions of the store samples it retrieves, and is trained through that mixture.

    Liu et al., "Retrieval-based Knowledge Transfer: An Effective Approach for Extreme Large Language
    Model Compression", arXiv 2310.15594 (Findings of EMNLP 2023), Sec. 3.3: for a training sample x
    with the teacher's distribution p_T(x), retrieve the k nearest store samples by the student's
    embedding (``key: features``: the features its classifier layer reads; x itself and samples derived
    from the same training example left out), weight their
    teacher distributions by ``softmax(cos / tau)`` into p_R(x), predict
    ``p(x) = lambda softmax(z_S(x)) + (1 - lambda) p_R(x)`` (lambda learned) and minimise
    ``KL(p_T(x) || p(x))``; ``student_kd: w`` adds ``w KL(p_T(x) || softmax(z_S(x)))``, plain KD at
    T = 1 from the stored distributions, on the student's own prediction. The student's keys of the
    store are recomputed every ``refresh_every`` steps (default: each epoch). ``key: overlap`` retrieves
    pairs whose texts share as many words (models/overlap.py), a key nothing in the student can
    memorise. ``held_out: f`` keeps a share f of the store's training examples out of the loss and,
    after training, sets lambda to what fits the teacher best on them (``RetrievalHead.tune_mix``;
    the issue's "learned or tuned mixing weight"). The stage trains on the
    store itself (``data.train: stage:NAME`` of a ``kind: knowledge`` stage), whose rows carry p_T,
    so no teacher runs. The trained student ships with the store, its keys and a FAISS index, and
    searches them at inference (models/retrieval.py).
    Classifier students only.
    """

    needs = frozenset({"logits", "embedding"})
    needs_teacher = False
    uses_sample_store = True
    paper = "arXiv:2310.15594"
    summary = "student mixes its prediction with teacher distributions retrieved from a sample store (FAISS)"

    class Args(MethodArgs):
        k: PositiveInt = Field(16, description="neighbours retrieved per input")
        tau: float = Field(0.05, gt=0, description="temperature of the similarity softmax")
        mix: float = Field(0.5, gt=0, lt=1, description="initial lambda, the student's own share (learned)")
        refresh_every: PositiveInt | None = Field(
            None, description="re-embed the store every N steps; default: at the start of each epoch"
        )
        key: Literal[RETRIEVAL_KEYS] = Field(
            "embedding",
            description="what queries and keys are made of: the student's sentence embedding (the paper's), "
            "the features its classifier layer reads (neighbours the classifier sees alike), or a pair's word "
            "overlap (pairs whose texts share as much; segment ids needed)",
        )
        held_out: float = Field(
            0.0,
            ge=0,
            lt=1,
            description="share of the store's training examples kept out of training to fit lambda on "
            "afterwards (0: lambda is learned with the student, the paper's)",
        )
        student_kd: float = Field(
            0.0, ge=0, description="weight of KL(p_T || softmax(z_S)) on the student's own prediction (0: paper's loss)"
        )

    def __init__(self, args: MethodArgs | None = None, teacher: int = 0) -> None:
        super().__init__(args, teacher)
        self.store: SampleStore | None = None
        self._refreshed_at: tuple[int, int] | None = None

    def student_needs(self) -> frozenset[str]:
        return frozenset({"logits", self.args.key})

    def setup(self, pair: Pair) -> None:
        if pair.student.kind != "classifier":
            raise IncompatibleError(
                f"retrikt retrieves class distributions: the student must be a classifier, not a {pair.student.kind}"
            )

    def alone_because(self) -> str | None:
        if self.args.held_out > 0:
            return (
                "retrikt's held_out keeps examples out of its own loss only; the stage's other methods "
                "would train on them and bias the mixing weight fitted there"
            )
        return None

    def attach_store(self, store: SampleStore, num_labels: int | None) -> None:
        """The stage's training data, a sample store (the pipeline opens it)."""
        check_store_labels(store, num_labels)
        self.store = store

    def bind(self, student: nn.Module, teachers: list[nn.Module]) -> None:
        from kdforge.models.retrieval import RetrievalHead

        if self.store is None:
            raise IncompatibleError(
                "retrikt trains on a sample store: set data.train to stage:NAME of a knowledge stage"
            )
        student.retrieval = RetrievalHead(self.store, self.args.k, self.args.tau, self.args.mix, self.args.key)
        if self.args.held_out > 0:
            try:
                student.retrieval.hold_out(self.args.held_out)
            except ValueError as err:
                raise IncompatibleError(f"retrikt held_out: {err}") from None
        object.__setattr__(self, "_student", student)  # not a submodule: the student is saved once

    def _refresh_if_due(self, batch: Batch) -> None:
        every = self.args.refresh_every
        due = (batch.epoch, 0) if every is None else (batch.epoch, batch.step // every)
        if self._refreshed_at != due or self._student.retrieval.index is None:
            self._student.retrieval.refresh(self._student)
            self._refreshed_at = due

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        self._refresh_if_due(batch)
        head: RetrievalHead = self._student.retrieval
        rows = batch.index.cpu()
        if int(rows.max()) >= len(head.store):
            raise IncompatibleError(f"retrikt: training row {int(rows.max())} is not in the store {head.store.folder}")
        exclude = head.sources[rows]
        log_mixture = head.log_probs(student.logits, student.require(self.args.key, "retrikt"), exclude)
        teacher_probs = head.probs[rows].to(log_mixture.device)
        keep = None if head.held_out is None else ~head.held_out[rows].to(log_mixture.device)
        loss = retrikt_loss(log_mixture, teacher_probs, keep)
        if self.args.student_kd > 0:  # the student's own half learns the teacher too, so lambda mixes two good views
            own = torch.log_softmax(student.logits.float(), dim=-1)
            loss = loss + self.args.student_kd * retrikt_loss(own, teacher_probs, keep)
        return loss
