"""GLMD's word-prediction distillation: no labels, no intermediate layers."""

from __future__ import annotations

from pydantic import PositiveFloat
from torch import Tensor

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.kd import kd_loss
from kdforge.methods.predictions import check_same_predictions, prediction_rows
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at


@register_method("glmd")
class GLMD(Method):
    """Word-prediction distillation: match the teacher's vocabulary distribution at every real token.

    Tan et al., "Are Intermediate Layers and Labels Really Necessary? A General Language Model
    Distillation Method" (GLMD), arXiv 2306.06625, Sec. 3 (section number not checked against the
    PDF). The loss, as the authors' code computes it (aitsc/GLMKD ``LogitsDistil``):
    ``L_wp = T^2 / N * sum_i KL(softmax(z_T,i / T) || softmax(z_S,i / T))`` over the N real tokens
    of the (masked) input, not only the masked ones; ``T = 15`` in the paper's runs. No gold
    labels, no hidden states, so teacher and student may differ in width and depth. GLMD runs it
    twice (general text, then task text: a recipe with two stages) and compresses the student's
    vocabulary with ``student.vocabulary`` (the teacher's logits are then cut to the kept ids).
    """

    needs = frozenset({"logits"})
    token_level = True
    paper = "arXiv:2306.06625"
    summary = "T^2 KL on the vocabulary distribution at every real token (GLMD), T = 15"
    student_kind: str | None = None

    class Args(MethodArgs):
        temperature: PositiveFloat | Schedule = 15.0

    def setup(self, pair: Pair) -> None:
        check_same_predictions(pair, "glmd")
        self.student_kind = pair.student.kind

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        t, s = prediction_rows(teacher, student, batch, "all", "glmd", self.student_kind)
        return kd_loss(s, t, value_at(self.args.temperature, batch.progress))
