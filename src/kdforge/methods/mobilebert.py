"""MobileBERT's layer-wise transfer: feature maps and attention, optionally progressive."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.reduce import masked_mean
from kdforge.methods.relations import relation_kl, scaled_relation
from kdforge.models.views import Views


def feature_map_loss(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """``1/(T N) sum_t sum_n (H^tr - H^st)^2`` on parameter-free layer-normalized feature maps."""

    def norm(x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), x.shape[-1:])

    return masked_mean((norm(student) - norm(teacher)) ** 2, mask)


def layer_weights(progress: float, layers: int, progressive: bool, earlier: float) -> list[float]:
    """Progressive transfer: phase l (of L equal ones) trains layer l at full weight, earlier layers at ``earlier``."""
    if not progressive:
        return [1.0] * layers
    phase = min(layers, math.floor(round(progress * layers, 9)) + 1)
    return [1.0 if i == phase else earlier if i < phase else 0.0 for i in range(1, layers + 1)]


@register_method("mobilebert")
class MobileBERT(Method):
    """Feature-map transfer (FMT) and attention transfer (AT) for every mapped layer.

    Sun et al., "MobileBERT: a Compact Task-Agnostic BERT for Resource-Limited Devices",
    arXiv 2004.02984, Eq. 1 ``L_FMT = 1/(TN) sum_t sum_n (H^tr_{t,l,n} - H^st_{t,l,n})^2`` (on
    parameter-free layer-normalized maps, as the official code does) and Eq. 2
    ``L_AT = 1/(TA) sum_t sum_a KL(a^tr_{t,l,a} || a^st_{t,l,a})``. With ``progressive: true``
    training is split into one phase per layer: layer l is distilled in phase l and, as in the
    official schedule, lower layers keep training at a small weight (``earlier_weight``); the
    pre-training distillation phase is a following stage. Needs equal widths and head counts.
    """

    needs = frozenset({"hidden_states", "qkv"})
    token_level = True
    paper = "arXiv:2004.02984"
    summary = "layer-normalized feature-map MSE + attention KL per layer, optionally progressive"

    class Args(MethodArgs):
        feature_weight: float = 1.0
        attention_weight: float = 1.0
        progressive: bool = False
        earlier_weight: float = 0.1

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if t.hidden_size != s.hidden_size or t.num_heads != s.num_heads:
            raise IncompatibleError(
                f"mobilebert transfers feature maps and attention as they are: widths and head counts must match "
                f"(teacher {t.hidden_size}/{t.num_heads}, student {s.hidden_size}/{s.num_heads})"
            )
        self.layer_map = check_map(default_map(t, s), t.num_layers, s.num_layers, "mobilebert")

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        mask = student.attention_mask
        hs, ht = student.require("hidden_states", "mobilebert"), teacher.require("hidden_states", "mobilebert")
        weights = layer_weights(batch.progress, len(self.layer_map), self.args.progressive, self.args.earlier_weight)
        total = hs[0].new_zeros((), dtype=torch.float)
        for weight, (t, s) in zip(weights, self.layer_map, strict=True):
            if not weight:
                continue
            fmt = feature_map_loss(hs[s], ht[t], mask)
            at = relation_kl(
                scaled_relation(teacher.queries[t - 1], teacher.keys[t - 1], mask),  # type: ignore[index]
                scaled_relation(student.queries[s - 1], student.keys[s - 1], mask),  # type: ignore[index]
                mask,
            )
            total = total + weight * (self.args.feature_weight * fmt + self.args.attention_weight * at)
        return total
