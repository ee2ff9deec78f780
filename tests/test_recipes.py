"""Every recipe shipped in recipes/ validates against the schema (paths resolved against the shared data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.recipe import load_recipe
from tests.conftest import SHARED_DATA

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 4


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_validates(path, monkeypatch):
    if "KDFORGE_DATA" in path.read_text(encoding="utf-8"):
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{SHARED_DATA} is absent")
        monkeypatch.setenv("KDFORGE_DATA", str(SHARED_DATA))
    recipe = load_recipe(path)
    assert recipe.stages and all(stage.methods or stage.kind != "distill" for stage in recipe.stages)
