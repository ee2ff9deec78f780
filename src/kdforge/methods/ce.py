"""Cross-entropy on the gold labels (the fine-tuning loss, or KD's hard-label term)."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.text_model import LABELLED
from kdforge.models.views import Views


def ce_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy ``-log softmax(z)_y`` over the batch.

    Token logits ``[B, T, C]`` with labels ``[B, T]`` average over the positions that have a label
    (``-100`` marks the rest: padding, special tokens, a word's later sub-tokens).
    """
    if logits.dim() == 3:
        logits, labels = logits.flatten(0, 1), labels.flatten()
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


@register_method("ce")
class CE(Method):
    """Hard-label cross-entropy; Hinton et al. (arXiv 1503.02531, Sec. 2) add it to soft targets.

    Needs a classifier or token-classifier student and labelled training data; uses no teacher.
    """

    needs = frozenset({"logits"})
    needs_teacher = False
    needs_labels = True
    paper = "arXiv:1503.02531"
    summary = "cross-entropy on gold labels"

    class Args(MethodArgs):
        label_smoothing: float = Field(0.0, ge=0.0, le=1.0)

    def setup(self, pair: Pair) -> None:
        if pair.student.kind not in LABELLED:
            raise IncompatibleError("ce needs a classifier student (task: classification or token_classification)")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if batch.labels is None:
            raise IncompatibleError("ce needs labels, but the training data has none")
        return ce_loss(student.require("logits", "ce"), batch.labels, self.args.label_smoothing)
