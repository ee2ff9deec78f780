"""DIITO: the student's outputs under interchange interventions follow the teacher's (causal distillation)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.kd import kd_loss
from kdforge.methods.layer_map import default_map
from kdforge.methods.predictions import check_same_predictions, prediction_rows
from kdforge.models import internals
from kdforge.models.views import Views
from kdforge.schedules import Schedule, value_at


def interchange_spans(
    base_lengths: list[int],
    source_lengths: list[int],
    proportion: float,
    max_tokens: int | None,
    generator: torch.Generator,
) -> list[tuple[int, int, int]]:
    """Per row ``(base_start, source_start, count)``: one consecutive span of ``count`` real tokens in each.

    ``count = int(min(len_base, len_source) * proportion)`` (at most ``max_tokens``); each span starts
    at a uniformly drawn offset of its own sequence, as in the reference's consecutive mode.
    """
    spans = []
    for base, source in zip(base_lengths, source_lengths, strict=True):
        count = int(min(base, source) * proportion)
        if max_tokens is not None:
            count = min(count, max_tokens)
        start = int(torch.randint(0, base - count + 1, (1,), generator=generator))
        source_start = int(torch.randint(0, source - count + 1, (1,), generator=generator))
        spans.append((start, source_start, count))
    return spans


def span_masks(spans: list[tuple[int, int, int]], mask: Tensor, source_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``[B, T]`` masks of the interchanged real tokens in the base rows and in the source rows."""
    base_out = torch.zeros_like(mask, dtype=torch.bool)
    source_out = torch.zeros_like(source_mask, dtype=torch.bool)
    for row, (start, source_start, count) in enumerate(spans):
        base_out[row, mask[row].nonzero().flatten()[start : start + count]] = True
        source_out[row, source_mask[row].nonzero().flatten()[source_start : source_start + count]] = True
    return base_out, source_out


def interchange(base: Tensor, source: Tensor, base_positions: Tensor, source_positions: Tensor) -> Tensor:
    """``base`` ``[B, T, d]`` with its marked positions set to ``source``'s marked ones, in order, row by row."""
    values = source[source_positions].to(base.dtype)
    return base.masked_scatter(base_positions.unsqueeze(-1), values)


def rolled(x: Tensor) -> Tensor:
    """The source batch of the reference: the batch shifted by one example (``cat([x[1:], x[:1]])``)."""
    return torch.roll(x, shifts=-1, dims=0)


@register_method("diito")
class DIITO(Method):
    """Causal distillation: match the teacher's counterfactual outputs under aligned interventions.

    Wu et al., "Causal Distillation for Language Models", arXiv 2112.02505 (NAACL 2022), Sec. 3:
    the distillation interchange intervention training objective. A source input (the batch
    rolled by one example, as the reference does) runs through both models; at an aligned pair of
    layers (student block l and the teacher block it was cut from, or ``l N / M``), a consecutive
    span of ~30% of the real tokens of each base input gets the source's states at another span
    of the same length (interchange intervention); then
    ``L_DIITO = T^2 KL(softmax(z^T_cf / T) || softmax(z^S_cf / T))`` on the counterfactual logits
    (classes, or every real token / the masked tokens of MLM). The paper adds it to DistilBERT's
    triple loss (``L_ce + L_mlm + L_cos``, 0.25 each in the reference): combine with ``kd``,
    ``mlm``/``ce`` and ``cosine`` by weight. The layer is drawn per step (``layer: random``) or
    fixed; a classifier reads only [CLS] at the top, so there a middle layer (the reference's
    choice for GLUE) intervenes on every step. The teacher runs under ``torch.no_grad``; the
    source states come from the models' ordinary passes (the rolled batch holds the same
    examples), so each model makes one extra pass.
    Needs the same tokenizer and prediction logits over the same classes or vocabulary.
    """

    needs = frozenset({"hidden_states"})
    token_level = True
    paper = "arXiv:2112.02505"
    summary = "KL between teacher and student outputs under aligned interchange interventions"

    class Args(MethodArgs):
        temperature: PositiveFloat | Schedule = 2.0
        proportion: float = Field(0.3, gt=0.0, le=1.0)
        max_tokens: PositiveInt | None = None
        layer: PositiveInt | Literal["random"] = "random"
        positions: Literal["masked", "all"] = "all"

    def setup(self, pair: Pair) -> None:
        check_same_predictions(pair, "diito")
        t, s = pair.teacher, pair.student
        if not pair.same_tokenizer:
            raise IncompatibleError("diito swaps states at token positions, so teacher and student must tokenize alike")
        self.layer_map = {s_layer: t_layer for t_layer, s_layer in default_map(t, s)}
        if self.args.layer != "random" and self.args.layer not in self.layer_map:
            raise IncompatibleError(f"diito: layer {self.args.layer} is not a student block (1..{s.num_layers})")

    def bind(self, student: nn.Module, teachers: list[nn.Module]) -> None:
        object.__setattr__(self, "student", student)  # not submodules: checkpoints hold the student once
        object.__setattr__(self, "teacher", teachers[self.teacher_index])

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        generator = torch.Generator().manual_seed(batch.seed * 1_000_003 + batch.step)
        layers = sorted(self.layer_map)
        if self.args.layer == "random":
            s_layer = layers[int(torch.randint(0, len(layers), (1,), generator=generator))]
        else:
            s_layer = self.args.layer
        t_layer = self.layer_map[s_layer]
        mask = student.attention_mask
        source_mask = rolled(mask)
        lengths = mask.sum(-1).tolist()
        spans = interchange_spans(
            lengths, rolled(mask.sum(-1)).tolist(), self.args.proportion, self.args.max_tokens, generator
        )
        base_at, source_at = span_masks(spans, mask, source_mask)

        t_source = rolled(teacher.require("hidden_states", "diito")[t_layer])
        s_source = rolled(student.require("hidden_states", "diito")[s_layer])
        with torch.no_grad():
            t_cf = self._counterfactual(
                self.teacher, batch.teacher_inputs[self.teacher_index], t_layer, t_source, base_at, source_at
            )
        s_cf = self._counterfactual(self.student, batch.student_inputs, s_layer, s_source, base_at, source_at)
        rows_t, rows_s = prediction_rows(
            Views(attention_mask=mask, logits=t_cf),
            Views(attention_mask=mask, logits=s_cf),
            batch,
            self.args.positions,
            "diito",
        )
        return kd_loss(rows_s, rows_t, value_at(self.args.temperature, batch.progress))

    @staticmethod
    def _counterfactual(
        model: nn.Module, inputs: dict[str, Tensor], layer: int, source: Tensor, base_at: Tensor, source_at: Tensor
    ) -> Tensor:
        """The model's logits with the output of block ``layer`` (hidden-state numbering) intervened on."""

        def splice(output: Tensor, _args: tuple, _kwargs: dict) -> Tensor:
            return interchange(output, source, base_at, source_at)

        with internals.rewrite_blocks(model.hf, {layer - 1: splice}):
            return model(inputs, frozenset({"logits"})).logits
