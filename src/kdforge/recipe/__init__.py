"""Recipes: the pydantic schema of a run and its YAML loader."""

from kdforge.recipe.loading import load_recipe, validate_recipe
from kdforge.recipe.schema import (
    DataSource,
    DataSpec,
    MethodSpec,
    Recipe,
    StageSpec,
    StudentSpec,
    TaskSpec,
    TeacherSpec,
    TrainingSpec,
)

__all__ = [
    "DataSource",
    "DataSpec",
    "MethodSpec",
    "Recipe",
    "StageSpec",
    "StudentSpec",
    "TaskSpec",
    "TeacherSpec",
    "TrainingSpec",
    "load_recipe",
    "validate_recipe",
]
