"""Values that change over a stage: method weights and temperatures can follow a schedule.

In a recipe a number is constant; ``{schedule: linear, start: 4, end: 1}`` moves from ``start``
to ``end`` over the stage's optimizer steps (``cosine`` eases in and out).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: Literal["constant", "linear", "cosine"] = "linear"
    start: float
    end: float

    def at(self, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if self.schedule == "constant":
            return self.start
        if self.schedule == "linear":
            return self.start + (self.end - self.start) * progress
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * progress)) / 2


Schedulable = float | Schedule


def value_at(value: Schedulable, progress: float) -> float:
    """The value of a number or a schedule at ``progress`` (0 = first step, 1 = end of stage)."""
    return value.at(progress) if isinstance(value, Schedule) else float(value)
