"""A run that is stopped and started again ends with the same weights as one that was not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

import kdforge
from kdforge.engine import trainer
from kdforge.recipe import validate_recipe
from tests.conftest import classification_recipe, sts_recipe


def weights(out: Path) -> dict:
    return load_file(str(out / "stages" / "distill" / "model" / "model.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key


class Killed(Exception):
    pass


def test_interrupted_run_resumes_to_identical_weights(embedding_teacher_dir, data_dir, tmp_path, monkeypatch):
    recipe = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir))
    kdforge.run(recipe, tmp_path / "straight", show=False)

    real_save = trainer.save_checkpoint
    saved = []

    def save_then_die(*args, **kwargs):
        path = real_save(*args, **kwargs)
        saved.append(path)
        if len(saved) == 2:  # killed right after the checkpoint at step 8
            raise Killed
        return path

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        kdforge.run(recipe, tmp_path / "resumed", show=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    results = kdforge.run(recipe, tmp_path / "resumed", show=False)

    assert results["training"]["resumed_from"] == 8
    assert_same(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_gradient_accumulation_resume_matches(classifier_teacher_dir, data_dir, tmp_path, monkeypatch):
    recipe = validate_recipe(
        classification_recipe(classifier_teacher_dir, data_dir, gradient_accumulation=2, max_steps=6, save_every=2)
    )
    kdforge.run(recipe, tmp_path / "straight", show=False)
    real_save = trainer.save_checkpoint
    calls = []

    def die_after_first(*args, **kwargs):
        path = real_save(*args, **kwargs)
        calls.append(path)
        if len(calls) == 1:
            raise Killed
        return path

    monkeypatch.setattr(trainer, "save_checkpoint", die_after_first)
    with pytest.raises(Killed):
        kdforge.run(recipe, tmp_path / "resumed", show=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    kdforge.run(recipe, tmp_path / "resumed", show=False)
    assert_same(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_kill_9_then_rerun_loses_nothing(embedding_teacher_dir, data_dir, tmp_path):
    recipe = sts_recipe(embedding_teacher_dir, data_dir, max_steps=40, save_every=5)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "kdforge.cli", "run", str(path), "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    subprocess.run([*command, str(tmp_path / "straight")], check=True, env=env, capture_output=True)

    victim = subprocess.Popen(
        [*command, str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = tmp_path / "killed" / "stages" / "distill" / "checkpoints"
    deadline = time.time() + 600  # a loaded machine starts the process slowly
    while time.time() < deadline and victim.poll() is None and not any(checkpoints.glob("step-*")):
        time.sleep(0.05)
    saved = any(checkpoints.glob("step-*"))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "results.json").exists(), "the run finished before it could be killed"
    assert saved, "the run wrote no checkpoint before it was killed"

    rerun = subprocess.run([*command, str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from the checkpoint at step" in rerun.stderr
    assert_same(weights(tmp_path / "straight"), weights(tmp_path / "killed"))


def test_checkpoint_of_another_recipe_is_refused(embedding_teacher_dir, data_dir, tmp_path, monkeypatch):
    first = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, max_steps=8))
    real_save = trainer.save_checkpoint

    def die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(trainer, "save_checkpoint", die)
    with pytest.raises(Killed):
        kdforge.run(first, tmp_path, show=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    other = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, max_steps=8, lr=5e-4))
    with pytest.raises(kdforge.KdforgeError, match="different recipe"):
        kdforge.run(other, tmp_path, show=False)
