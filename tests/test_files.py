"""atomic_path: a write that fails halfway leaves the old file and no partial one behind."""

from __future__ import annotations

import pytest

from kdforge.files import atomic_path


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with atomic_path(target) as partial:
        partial.write_text("new")
        assert target.read_text() == "old"  # nothing is visible before the block ends
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "shard.safetensors"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt  # a kill mid-write
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
