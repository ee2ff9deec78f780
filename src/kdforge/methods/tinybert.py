"""TinyBERT's transformer distillation: embedding, hidden, attention and prediction layers."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import PositiveFloat, field_validator
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.attention import attention_mse_loss
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.hidden_mse import hidden_mse_loss
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.projection import width_projection
from kdforge.models.internals import attention_scores
from kdforge.models.views import Views

Part = Literal["embedding", "hidden", "attention", "prediction"]


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``-softmax(z_T / t) . log softmax(z_S / t)``, averaged over the batch (TinyBERT's Eq. 10)."""
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    return -(p_teacher * F.log_softmax(student_logits.float() / temperature, dim=-1)).sum(-1).mean()


@register_method("tinybert")
class TinyBERT(Method):
    """The four TinyBERT losses over its layer mapping, as one method.

    Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv 1909.10351,
    Eq. 11: ``L_layer`` is ``L_embd = MSE(E^S W_e, E^T)`` (Eq. 9) for m = 0, ``L_hidn + L_attn``
    (Eqs. 7, 8; attention on unnormalized scores) for mapped blocks, and
    ``L_pred = CE(z^T/t, z^S/t)`` (Eq. 10) on top; all weights 1. ``parts`` selects the terms: the
    paper's general and first task stage use ``[embedding, hidden, attention]``, its second task
    stage ``[prediction]``. One learned ``W`` maps the student's width to the teacher's. Needs
    equal head counts and the same tokenizer.
    """

    token_level = True
    paper = "arXiv:1909.10351"
    summary = "embedding + hidden + attention-score + prediction losses over TinyBERT's layer map"

    class Args(MethodArgs):
        parts: list[Part] = ["embedding", "hidden", "attention"]
        temperature: PositiveFloat = 1.0
        layer_map: list[tuple[int, int]] | None = None

        @field_validator("parts")
        @classmethod
        def _some(cls, value: list[str]) -> list[str]:
            if not value:
                raise ValueError("parts is empty")
            return value

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        parts = set(self.args.parts)
        needs = set()
        if parts & {"embedding", "hidden"}:
            needs.add("hidden_states")
        if "attention" in parts:
            needs.add("qkv")
        if "prediction" in parts:
            needs.add("logits")
        return frozenset(needs)

    def setup(self, pair: Pair) -> None:
        t, s = pair.teacher, pair.student
        if t is None:
            raise IncompatibleError("tinybert needs a teacher")
        parts = set(self.args.parts)
        if "attention" in parts and t.num_heads != s.num_heads:
            raise IncompatibleError(
                f"tinybert's attention loss needs equal head counts (teacher {t.num_heads}, student {s.num_heads}); "
                "drop 'attention' from parts or give the student as many heads"
            )
        if parts - {"prediction"} and not pair.same_tokenizer:
            raise IncompatibleError("tinybert compares token positions, but teacher and student tokenize differently")
        if "prediction" in parts and (t.kind != "classifier" or s.kind != "classifier"):
            raise IncompatibleError("tinybert's prediction loss needs classifier logits (task: classification)")
        layer_map = self.args.layer_map or default_map(t, s)
        self.layer_map = check_map([p for p in layer_map if p != (0, 0)], t.num_layers, s.num_layers, "tinybert")
        self.proj = width_projection(s.hidden_size, t.hidden_size)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        parts = set(self.args.parts)
        mask = student.attention_mask
        total: Tensor | float = 0.0
        if parts & {"embedding", "hidden"}:
            hs, ht = student.require("hidden_states", "tinybert"), teacher.require("hidden_states", "tinybert")
            if "embedding" in parts:
                total = total + hidden_mse_loss([hs[0]], [ht[0]], mask, self.proj)
            if "hidden" in parts:
                total = total + hidden_mse_loss(
                    [hs[s] for _, s in self.layer_map], [ht[t] for t, _ in self.layer_map], mask, self.proj
                )
        if "attention" in parts:

            def scores(views: Views, layers: list[int]) -> list[Tensor]:
                q, k = views.require("queries", "tinybert"), views.require("keys", "tinybert")
                return [attention_scores(q[i - 1], k[i - 1]) for i in layers]

            total = total + attention_mse_loss(
                scores(student, [s for _, s in self.layer_map]), scores(teacher, [t for t, _ in self.layer_map]), mask
            )
        if "prediction" in parts:
            total = total + soft_cross_entropy(
                student.require("logits", "tinybert"), teacher.require("logits", "tinybert"), self.args.temperature
            )
        return total  # type: ignore[return-value]
