"""Tasks: data loading and metrics per task. Each module registers its task on import."""

from kdforge.tasks import classification, language_modeling, ranking, sts  # noqa: F401  (register the built-in tasks)
from kdforge.tasks.base import TASKS, Task, register_task

__all__ = ["TASKS", "Task", "register_task"]
