"""SimCSE (unsupervised): a sentence's two dropout views are positives, other sentences negatives."""

from __future__ import annotations

from pydantic import PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.contrastive import info_nce
from kdforge.models.views import Views


@register_method("simcse")
class SimCSE(Method):
    """Contrastive learning of sentence embeddings from dropout noise alone.

    Gao et al., "SimCSE: Simple Contrastive Learning of Sentence Embeddings", arXiv 2104.08821,
    Eq. 4: ``l_i = -log exp(sim(h_i, h_i') / tau) / sum_j exp(sim(h_i, h_j') / tau)`` with ``h, h'``
    two passes of the same batch under different dropout masks, cosine similarity, ``tau = 0.05``.
    Needs no teacher: use it alone (a ``finetune`` stage on unlabeled sentences) or next to a
    distillation method.
    """

    needs = frozenset({"embedding"})
    needs_teacher = False
    second_view = "dropout"
    paper = "arXiv:2104.08821"
    summary = "unsupervised contrastive loss between two dropout views (no teacher)"

    class Args(MethodArgs):
        temperature: PositiveFloat = 0.05

    def setup(self, pair: Pair) -> None:
        if pair.student.kind != "embedding":
            raise IncompatibleError("simcse trains sentence embeddings (task: sts)")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        second = student.second
        assert second is not None
        return info_nce(
            student.require("embedding", "simcse"), second.require("embedding", "simcse"), self.args.temperature
        )
