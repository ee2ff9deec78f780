"""Tasks: data loading and metrics per task. Each module registers its task on import."""

from kdforge.tasks import (  # noqa: F401  (register the built-in tasks)
    classification,
    intent_slots,
    language_modeling,
    ranking,
    sts,
    token_classification,
)
from kdforge.tasks.base import TASKS, Task, register_task

__all__ = ["TASKS", "Task", "register_task"]
