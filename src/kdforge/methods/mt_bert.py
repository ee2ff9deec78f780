"""MT-BERT: teachers weighted per sample by their own task loss, plus per-teacher hidden-state matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.hidden_mse import hidden_mse_loss
from kdforge.methods.layer_map import check_map, uniform_map
from kdforge.methods.multi_teacher import check_classifiers
from kdforge.methods.projection import width_projection
from kdforge.models.views import Views


def importance_weighted_soft_loss(
    student_logits: Tensor, teacher_logits: list[Tensor], labels: Tensor, temperature: float
) -> Tensor:
    """``sum_i mean_b CE(p_Ti, p_S) / (1 + CE(y, p_Ti))``: confident, correct teachers count more."""
    log_s = F.log_softmax(student_logits.float() / temperature, -1)
    total = student_logits.new_zeros((), dtype=torch.float)
    for z_t in teacher_logits:
        p_t = F.softmax(z_t.float() / temperature, -1)
        soft = -(p_t * log_s).sum(-1)
        weight = 1.0 / (1.0 + F.cross_entropy(z_t.float(), labels, reduction="none"))
        total = total + (weight * soft).mean()
    return total


@register_method("mt_bert")
class MTBERT(Method):
    """Multi-teacher distillation with teacher-importance weighting and hidden-state transfer.

    Wu et al., "One Teacher is Enough? Pre-trained Language Model Distillation from Multiple
    Teachers", arXiv 2106.01023, Sec. 3.2-3.3: the soft loss of teacher i on sample x is divided by
    ``1 + CE(y, p_Ti(x))`` (teachers that are right and sure count more), and the student's hidden
    states match every teacher's mapped layers through a teacher-specific projection ``W_i``
    (``hidden_weight`` scales that part; 0 turns it off). The paper's multi-teacher co-finetuning
    of the teachers is a preceding stage. Needs labels.
    """

    needs_labels = True
    multi_teacher = True
    token_level = True
    paper = "arXiv:2106.01023"
    summary = "soft losses weighted by each teacher's own task loss + per-teacher hidden MSE"

    class Args(MethodArgs):
        temperature: PositiveFloat = 1.0
        hidden_weight: float = 1.0

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"logits", "hidden_states"} if self.args.hidden_weight else {"logits"})

    def setup(self, pair: Pair) -> None:
        check_classifiers(pair, "mt_bert")
        if self.args.hidden_weight and not pair.same_tokenizer:
            raise IncompatibleError("mt_bert's hidden loss compares token positions: all models must tokenize alike")
        s = pair.student
        self.layer_maps = [
            check_map(uniform_map(t.num_layers, s.num_layers), t.num_layers, s.num_layers, "mt_bert")
            for t in pair.teachers
        ]
        self.projections = nn.ModuleList(width_projection(s.hidden_size, t.hidden_size) for t in pair.teachers)

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        if batch.labels is None:
            raise IncompatibleError("mt_bert needs labels, but the training data has none")
        logits = [t.require("logits", "mt_bert") for t in teacher]
        loss = importance_weighted_soft_loss(
            student.require("logits", "mt_bert"), logits, batch.labels, self.args.temperature
        )
        if self.args.hidden_weight:
            hs = student.require("hidden_states", "mt_bert")
            for views, layer_map, proj in zip(teacher, self.layer_maps, self.projections, strict=True):
                ht = views.require("hidden_states", "mt_bert")
                hidden = hidden_mse_loss(
                    [hs[s] for _, s in layer_map], [ht[t] for t, _ in layer_map], student.attention_mask, proj
                )
                loss = loss + self.args.hidden_weight * hidden
        return loss
