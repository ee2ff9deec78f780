"""A learned linear map from the student's width to the teacher's, when they differ."""

from __future__ import annotations

from torch import nn


def width_projection(student_width: int, teacher_width: int) -> nn.Module:
    """``W`` of TinyBERT's Eq. 2 / 4: identity when widths match, else a trained ``Linear``."""
    if student_width == teacher_width:
        return nn.Identity()
    return nn.Linear(student_width, teacher_width, bias=False)
