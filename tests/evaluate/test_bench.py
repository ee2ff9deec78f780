"""``kdforge bench``: every figure for every model, a plot, and the same quality as ``kdforge eval``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.errors import KdforgeError
from kdforge.evaluate.bench import bench
from kdforge.export import export
from kdforge.models import load_model
from kdforge.recipe.schema import DataSource

runner = CliRunner()
FIELDS = {
    "model",
    "format",
    "kind",
    "parameters",
    "disk_mb",
    "latency_ms_p50",
    "latency_ms_p95",
    "sentences_per_second",
    "peak_memory_mb",
    "metrics",
}


@pytest.fixture(scope="module")
def onnx_dir(embedding_teacher_dir, tmp_path_factory):
    return export(load_model(str(embedding_teacher_dir)), tmp_path_factory.mktemp("bench") / "onnx", "onnx")


@pytest.fixture(scope="module")
def benched(embedding_teacher_dir, onnx_dir, data_dir, tmp_path_factory):
    """One small run through the CLI: a PyTorch folder, its ONNX export, and the PyTorch one as int8."""
    out = tmp_path_factory.mktemp("bench") / "out"
    data = str(data_dir / "sts-dev.csv")
    args = [str(embedding_teacher_dir), str(onnx_dir), "--task", "sts", "--data", data, "--torch-int8"]
    args += ["--sentences", "48", "--latency-sentences", "4", "--rounds", "2", "--out", str(out), "--json"]
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output), out


def test_bench_reports_every_field_for_every_model(benched, embedding_teacher_dir, onnx_dir):
    payload, out = benched
    rows = payload["models"]
    assert [(r["model"], r["format"]) for r in rows] == [
        (str(embedding_teacher_dir), "pytorch fp32"),
        (str(onnx_dir), "onnx fp32"),
        (str(embedding_teacher_dir), "pytorch int8"),
    ]
    for row in rows:
        assert set(row) == FIELDS
        assert row["parameters"] > 0 and row["disk_mb"] > 0 and row["sentences_per_second"] > 0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"]
        assert row["peak_memory_mb"] is not None and row["peak_memory_mb"] > 0  # Linux: /proc
        assert {"spearman", "pearson"} <= set(row["metrics"])
    assert rows[2]["disk_mb"] < rows[0]["disk_mb"]  # int8 linear weights
    assert payload["settings"]["sentences"] == 48 and payload["settings"]["metric"] == "spearman"
    assert (out / "bench.png").stat().st_size > 0 and (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "bench.json").read_text())["models"] == rows


def test_bench_quality_is_what_eval_reports(benched, onnx_dir, embedding_teacher_dir, data_dir):
    payload, _ = benched
    for row, model in zip(payload["models"][:2], (embedding_teacher_dir, onnx_dir), strict=True):
        result = runner.invoke(
            app, ["eval", str(model), "--task", "sts", "--data", str(data_dir / "sts-dev.csv"), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["metrics"] == pytest.approx(row["metrics"], abs=1e-9)


def test_bench_needs_task_and_data_together(embedding_teacher_dir, data_dir):
    with pytest.raises(KdforgeError, match="both a task and data"):
        bench([str(embedding_teacher_dir)], task="sts")


def test_bench_reports_a_missing_model_in_one_line(tmp_path):
    result = runner.invoke(app, ["bench", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no such folder" in lines[0]


def test_bench_measures_quality_only_for_sentence_tasks(embedding_teacher_dir, data_dir):
    with pytest.raises(KdforgeError, match="quality for sts, classification, token_classification, intent_slots"):
        bench([str(embedding_teacher_dir)], task="ranking", data=DataSource(path=str(data_dir / "sts-dev.csv")))
