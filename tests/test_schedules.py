"""Weights and temperatures that follow a schedule over the stage."""

from __future__ import annotations

import math

import pytest

import kdforge
from kdforge.errors import RecipeError
from kdforge.recipe import validate_recipe
from kdforge.schedules import Schedule, value_at
from tests.conftest import classification_recipe


def test_schedule_values_by_hand():
    linear = Schedule(schedule="linear", start=4.0, end=1.0)
    assert [linear.at(p) for p in (0.0, 0.5, 1.0)] == [4.0, 2.5, 1.0]
    cosine = Schedule(schedule="cosine", start=1.0, end=0.0)
    assert cosine.at(0.0) == 1.0 and cosine.at(1.0) == pytest.approx(0.0)
    assert cosine.at(0.25) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert Schedule(schedule="constant", start=3.0, end=9.0).at(0.7) == 3.0
    assert value_at(2.5, 0.3) == 2.5


def test_recipe_accepts_scheduled_weight_and_temperature(classifier_teacher_dir, data_dir, tmp_path):
    recipe = classification_recipe(
        classifier_teacher_dir,
        data_dir,
        methods=[
            {"name": "kd", "temperature": {"schedule": "linear", "start": 4, "end": 1}},
            {"name": "ce", "weight": {"schedule": "cosine", "start": 0.0, "end": 1.0}},
        ],
        max_steps=6,
    )
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert results["training"]["steps"] == 6


def test_bad_schedule_is_a_recipe_error(classifier_teacher_dir, data_dir):
    recipe = classification_recipe(classifier_teacher_dir, data_dir, methods=[{"name": "kd", "weight": {"start": 1}}])
    with pytest.raises(RecipeError, match="methods"):
        validate_recipe(recipe)
