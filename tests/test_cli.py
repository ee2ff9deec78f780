"""The command line: one-line errors with exit code 2, JSON output, listings."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from kdforge.cli import app
from tests.conftest import sts_recipe

runner = CliRunner()


def test_bad_recipe_is_one_line_and_exit_2(embedding_teacher_dir, data_dir, tmp_path):
    recipe = sts_recipe(embedding_teacher_dir, data_dir)
    recipe["methods"] = [{"name": "distil"}]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "methods[0]" in lines[0] and "unknown method 'distil'" in lines[0] and "embedding_mse" in lines[0]
    assert "Traceback" not in result.output


def test_missing_recipe(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "recipe not found" in result.output


def test_validate_lists_stages(embedding_teacher_dir, data_dir, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(sts_recipe(embedding_teacher_dir, data_dir)))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and "valid" in result.output and "embedding_mse" in result.output


def test_run_writes_student_results_checkpoints_and_logs(embedding_teacher_dir, data_dir, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(sts_recipe(embedding_teacher_dir, data_dir)))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert {"spearman", "pearson"} <= set(results["metrics"]["student"]["eval"])
    assert (out / "student" / "modules.json").is_file()
    assert list((out / "stages" / "distill" / "checkpoints").glob("step-*/model.safetensors"))
    assert list((out / "stages" / "distill" / "logs").rglob("events.out.tfevents.*"))


def test_eval_json(embedding_teacher_dir, data_dir):
    result = runner.invoke(
        app, ["eval", str(embedding_teacher_dir), "--task", "sts", "--data", str(data_dir / "sts-dev.csv"), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert -100 <= payload["metrics"]["spearman"] <= 100


def test_eval_on_unlabelled_data_is_refused(embedding_teacher_dir, data_dir):
    result = runner.invoke(
        app, ["eval", str(embedding_teacher_dir), "--task", "sts", "--data", str(data_dir / "train.txt")]
    )
    assert result.exit_code == 2 and "no gold scores" in result.output


def test_methods_lists_every_method_with_its_paper():
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    for name in ("kd", "ce", "hidden_mse", "attention", "embedding_mse", "cosine"):
        assert name in result.output
    assert "arXiv:1909.10351" in result.output


def test_methods_markdown_has_one_row_per_method():
    from kdforge.methods import METHODS

    result = runner.invoke(app, ["methods", "--markdown"])
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == METHODS.names()
    assert all(row.count("|") == 5 for row in rows)
