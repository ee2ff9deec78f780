"""Patient KD: the student's intermediate [CLS] states follow normalized teacher states."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.models.views import Views


def patience_loss(student_cls: list[Tensor], teacher_cls: list[Tensor]) -> Tensor:
    """``sum_j || s_j / ||s_j|| - t_j / ||t_j|| ||^2``, summed over layers, averaged over the batch."""
    total = student_cls[0].new_zeros(())
    for s, t in zip(student_cls, teacher_cls, strict=True):
        diff = F.normalize(s.float(), dim=-1) - F.normalize(t.float(), dim=-1)
        total = total + diff.pow(2).sum(-1).mean()
    return total


def patient_layers(teacher_layers: int, student_layers: int, strategy: str) -> list[tuple[int, int]]:
    """``(teacher, student)`` hidden-state indices for student layers ``1..M-1`` (PKD-Skip / PKD-Last)."""
    student = range(1, student_layers)
    if strategy == "skip":
        step = teacher_layers // student_layers
        return [(j * step, j) for j in student]
    first = teacher_layers - student_layers + 1
    return [(first + j - 1, j) for j in student]


@register_method("pkd")
class PKD(Method):
    """Patient knowledge distillation of intermediate [CLS] representations.

    Sun et al., "Patient Knowledge Distillation for BERT Model Compression", arXiv 1908.09355,
    Eq. 4: ``L_PT = sum_i sum_{j=1}^{M-1} || h^s_{i,j}/||h^s_{i,j}||_2 - h^t_{i,I_pt(j)}/||h^t_{i,I_pt(j)}||_2 ||_2^2``
    (averaged here over the batch). ``strategy: skip`` takes every k-th teacher layer
    (``I_pt = {k, 2k, ...}``), ``last`` the last M-1 below the top. The last student layer is left
    to the prediction loss: combine with ``kd`` (``L_DS``) and ``ce`` as the paper's Eq. 5 does
    (``beta`` is this method's ``weight``). Needs equal widths.
    """

    needs = frozenset({"hidden_states"})
    paper = "arXiv:1908.09355"
    summary = "normalized [CLS] states of intermediate layers (PKD-Skip / PKD-Last)"

    class Args(MethodArgs):
        strategy: Literal["skip", "last"] = "skip"

    def setup(self, pair: Pair) -> None:
        self.check_pair(pair)
        t, s = pair.teacher, pair.student
        if t.hidden_size != s.hidden_size:
            raise IncompatibleError(
                f"pkd compares normalized states directly, but the widths differ ({t.hidden_size} vs {s.hidden_size})"
            )
        if s.num_layers < 2:
            raise IncompatibleError("pkd needs a student with at least 2 layers (it distils layers 1..M-1)")
        if s.num_layers > t.num_layers:
            raise IncompatibleError(
                f"pkd maps each student layer to a deeper teacher layer, but the student has {s.num_layers} layers "
                f"and the teacher {t.num_layers}"
            )
        self.layer_map = patient_layers(t.num_layers, s.num_layers, self.args.strategy)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        hs, ht = student.require("hidden_states", "pkd"), teacher.require("hidden_states", "pkd")
        return patience_loss([hs[s][:, 0] for _, s in self.layer_map], [ht[t][:, 0] for t, _ in self.layer_map])
