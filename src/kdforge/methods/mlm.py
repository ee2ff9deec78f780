"""The student's own language-modelling loss: cross-entropy on the masked tokens or the next token."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, Pair, register_method
from kdforge.methods.predictions import IGNORE, LANGUAGE_MODELS
from kdforge.models.views import Views


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean ``-log q(x_i)`` over the positions with a target (``labels != -100``); 0 when none has one."""
    picked = labels != IGNORE
    if not picked.any():
        return logits.sum() * 0.0  # keeps the graph: a batch with nothing masked adds no gradient
    return F.cross_entropy(logits[picked].float(), labels[picked])


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Causal LM: position ``t`` predicts token ``t + 1``; ``masked_lm_loss`` after the shift."""
    return masked_lm_loss(logits[:, :-1], labels[:, 1:])


def language_model_loss(kind: str | None, logits: Tensor, labels: Tensor) -> Tensor:
    """The loss a model of ``kind`` is pre-trained with."""
    return next_token_loss(logits, labels) if kind == "causal_lm" else masked_lm_loss(logits, labels)


@register_method("mlm")
class MLM(Method):
    """The student's own language-modelling cross-entropy; needs no teacher.

    With task ``mlm``: BERT's masked-LM loss (Devlin et al., arXiv 1810.04805, Sec. 3.1, Task #1)
    on the masked positions: the pre-training step of PD (Turc et al., arXiv 1908.08962) and
    DistilBERT's ``L_mlm`` (arXiv 1910.01108, Sec. 2). With task ``lm`` (a causal-LM student) it
    is the next-token loss instead (DistilBERT's ``alpha_clm`` term); one name for both, as the
    task decides which targets ``batch.labels`` holds.
    """

    needs = frozenset({"logits"})
    needs_teacher = False
    needs_labels = True
    paper = "arXiv:1810.04805"
    summary = "the student's masked-token (task mlm) or next-token (task lm) cross-entropy"
    student_kind: str | None = None

    def setup(self, pair: Pair) -> None:
        if pair.student.kind not in LANGUAGE_MODELS:
            raise IncompatibleError("mlm needs a language-model student (task: mlm or lm)")
        self.student_kind = pair.student.kind

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if batch.labels is None or batch.labels.dim() != 2:
            raise IncompatibleError("mlm needs token targets; use task mlm or lm")
        return language_model_loss(self.student_kind, student.require("logits", "mlm"), batch.labels)
