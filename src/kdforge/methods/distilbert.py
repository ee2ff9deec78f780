"""DistilBERT's triple loss: soft targets, the student's own MLM loss, and hidden-state cosine."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.cosine import cosine_loss
from kdforge.methods.kd import kd_loss
from kdforge.methods.mlm import language_model_loss
from kdforge.methods.predictions import LANGUAGE_MODELS, check_same_predictions, prediction_rows
from kdforge.methods.projection import width_projection
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at


@register_method("distilbert")
class DistilBERT(Method):
    """``alpha_ce L_ce + alpha_mlm L_mlm + alpha_cos L_cos``, DistilBERT's pre-training objective.

    Sanh et al., arXiv 1910.01108, Sec. 2 ("Training loss", unnumbered): ``L_ce`` is the
    ``T^2``-scaled KL from the teacher's softened vocabulary distribution (``kd``'s loss) at every
    real token (the authors' ``distiller.py``; ``positions: masked`` is its
    ``--restrict_ce_to_mask``), ``L_mlm`` the student's masked-LM loss (``mlm``), ``L_cos`` the
    ``1 - cos`` between last hidden states at real tokens (``cosine``). Defaults are the README
    command's (5, 2, 1, T = 2). On a causal LM (DistilGPT-2) ``L_mlm`` is the next-token loss.
    Needs the same vocabulary and tokenizer; a learned projection bridges different widths.
    """

    token_level = True
    paper = "arXiv:1910.01108"
    summary = "5 x T^2 KL on token logits + 2 x student MLM loss + 1 x hidden-state cosine (T = 2)"
    student_kind: str | None = None

    class Args(MethodArgs):
        temperature: PositiveFloat | Schedule = 2.0
        alpha_ce: NonNegativeFloat = 5.0
        alpha_mlm: NonNegativeFloat = 2.0
        alpha_cos: NonNegativeFloat = 1.0
        positions: Literal["all", "masked"] = "all"

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"logits", "hidden_states"} if self.args.alpha_cos else {"logits"})

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return self.args.alpha_mlm > 0

    def setup(self, pair: Pair) -> None:
        check_same_predictions(pair, "distilbert")
        if pair.student.kind not in LANGUAGE_MODELS:
            raise IncompatibleError("distilbert needs language-model teacher and student (task: mlm or lm)")
        self.student_kind = pair.student.kind
        self.proj = width_projection(pair.student.hidden_size, pair.teacher.hidden_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        args = self.args
        t, s = prediction_rows(teacher, student, batch, args.positions, "distilbert", self.student_kind)
        loss = args.alpha_ce * kd_loss(s, t, value_at(args.temperature, batch.progress))
        if args.alpha_mlm:
            if batch.labels is None:
                raise IncompatibleError("distilbert's MLM term needs token targets; use task mlm or lm")
            loss = loss + args.alpha_mlm * language_model_loss(self.student_kind, student.logits, batch.labels)
        if args.alpha_cos:
            hs = student.require("hidden_states", "distilbert")[-1]
            ht = teacher.require("hidden_states", "distilbert")[-1]
            loss = loss + args.alpha_cos * cosine_loss(self.proj(hs), ht, student.attention_mask)
        return loss
