"""Cross-entropy on the gold labels (the fine-tuning loss, or KD's hard-label term)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import TOKEN_LABELS, Batch, Method, MethodArgs, Pair, register_method
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
    ``view: token_logits`` trains the slot head of a joint intent + slot student on the gold tags
    (task ``intent_slots``); with the default ``view: logits`` alongside, the loss is the sum of the
    intent and slot cross-entropies that Chen et al. (arXiv 1902.10909, Eq. 3) fine-tune with.
    """

    needs = frozenset({"logits"})
    needs_teacher = False
    needs_labels = True
    paper = "arXiv:1503.02531"
    summary = "cross-entropy on gold labels"

    class Args(MethodArgs):
        label_smoothing: float = Field(0.0, ge=0.0, le=1.0)
        view: Literal["logits", "token_logits"] = "logits"

    def student_needs(self) -> frozenset[str]:
        return frozenset({self.args.view})

    def setup(self, pair: Pair) -> None:
        if self.args.view == "token_logits" and pair.student.kind != "joint":
            raise IncompatibleError("ce with view: token_logits trains a joint model's slot head (task: intent_slots)")
        if pair.student.kind not in LABELLED:
            raise IncompatibleError(
                "ce needs a classifier student (task: classification, token_classification or intent_slots)"
            )

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        labels = batch.labels if self.args.view == "logits" else batch.extra.get(TOKEN_LABELS)
        if labels is None:
            raise IncompatibleError("ce needs labels, but the training data has none")
        return ce_loss(student.require(self.args.view, "ce"), labels, self.args.label_smoothing)
