"""`accelerate launch` runs the same recipe on several processes (here 2 CPU processes, gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from kdforge.models import load_model
from tests.conftest import classification_recipe

LAUNCH = [
    "accelerate",
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "-m",
    "kdforge.cli",
    "run",
]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_two_processes_train_like_one_with_the_same_global_batch(classifier_teacher_dir, data_dir, tmp_path):
    def recipe(batch_size: int) -> str:
        data = classification_recipe(
            classifier_teacher_dir,
            data_dir,
            methods=[{"name": "kd", "temperature": 2.0}, {"name": "ce"}],
            batch_size=batch_size,
            max_steps=6,
            lr=3e-4,
        )
        # without dropout each process computes exactly its half of the single-process batch
        data["student"]["config"] = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        path = tmp_path / f"recipe-{batch_size}.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "kdforge.cli", "run", recipe(16), "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    launched = subprocess.run(
        [*LAUNCH, recipe(8), "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert launched.stderr.count("kdforge results in") == 1, "only the main process reports and writes results"
    assert (tmp_path / "two" / "results.json").is_file() and (tmp_path / "two" / "student" / "config.json").is_file()

    one = load_file(str(tmp_path / "one" / "stages" / "distill" / "model" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "stages" / "distill" / "model" / "model.safetensors"))
    start = load_model(str(classifier_teacher_dir)).hf.state_dict()
    moved = max((one[k] - start[k]).abs().max().item() for k in one if k in start)
    assert moved > 1e-4  # training changed the student...
    for key in one:  # ...identically: same examples per global step, averaged gradients
        assert (one[key] - two[key]).abs().max() < 1e-5, key
