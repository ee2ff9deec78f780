"""Failures the user must understand in one line, with nothing lost."""

from __future__ import annotations

import pytest

import kdforge
from kdforge.engine import checkpoint
from kdforge.errors import CheckpointError, KdforgeError
from kdforge.recipe import validate_recipe
from tests.conftest import sts_recipe


def test_unwritable_output_folder_is_reported_before_loading_anything(embedding_teacher_dir, data_dir, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    recipe = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir))
    with pytest.raises(KdforgeError, match="cannot write to the output folder"):
        kdforge.run(recipe, blocker / "run", show=False)


def test_failed_checkpoint_write_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    folder = tmp_path / "checkpoints"
    args = ({"w": torch.ones(2)}, {"state": {}, "param_groups": []}, {}, {"global_step": 1, "fingerprint": "f"}, 2)
    first = checkpoint.save_checkpoint(folder, 1, *args)

    def no_space(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", no_space)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save_checkpoint(folder, 2, *args)
    assert "No space left on device" in str(caught.value) and "rerun to resume" in str(caught.value)
    assert checkpoint.latest_checkpoint(folder, "f").path == first


def test_unreadable_checkpoint_is_reported(tmp_path):
    import torch

    folder = tmp_path / "checkpoints"
    args = ({"w": torch.ones(2)}, {"state": {}, "param_groups": []}, {}, {"global_step": 3, "fingerprint": "f"}, 2)
    path = checkpoint.save_checkpoint(folder, 3, *args)
    (path / "model.safetensors").write_bytes(b"truncated")
    found = checkpoint.latest_checkpoint(folder, "f")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        checkpoint.load_checkpoint(found)


def test_interrupted_save_leaves_no_half_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / ".step-00000009.tmp").mkdir(parents=True)  # what a kill during saving leaves
    assert checkpoint.latest_checkpoint(folder, "f") is None


def test_runs_starting_together_in_one_folder_do_not_trip_over_the_write_check(tmp_path):
    """Two runs into one output folder (other stages, other seeds) each check it is writable at once."""
    from concurrent.futures import ThreadPoolExecutor

    from kdforge.engine.pipeline import _writable

    def check_many(_):
        for _ in range(300):
            _writable(tmp_path)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check_many, range(4)))  # re-raises a KdforgeError from any thread
    assert list(tmp_path.iterdir()) == []  # no probe left behind
