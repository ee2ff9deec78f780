"""The sample store of RetriKT: what is written reads back, and a broken store says what is wrong."""

from __future__ import annotations

import json

import pytest
import torch

from kdforge.errors import StoreError
from kdforge.store.samples import is_sample_store, open_samples, write_samples


def small_store(folder, pairs=False):
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    return write_samples(
        folder,
        ["good film", "bad film", "fine film"],
        [0, 1, 0],
        [0, 1, -3],
        probs,
        ["pos", "neg"],
        pairs=["a", "b", "c"] if pairs else None,
        meta={"source": "encoder"},
    )


def test_round_trip(tmp_path):
    small_store(tmp_path / "s", pairs=True)
    store = open_samples(tmp_path / "s")
    assert is_sample_store(tmp_path / "s")
    assert len(store) == 3 and store.labels == ["pos", "neg"]
    assert store.texts == ["good film", "bad film", "fine film"] and store.pairs == ["a", "b", "c"]
    assert store.sources.tolist() == [0, 1, -3]
    assert store.samples["label"] == ["pos", "neg", "pos"]  # label names, as training data reads them
    assert torch.equal(store.probs, torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    assert store.meta["source"] == "encoder" and store.size_bytes() > 0


def test_mismatched_columns_are_refused(tmp_path):
    with pytest.raises(StoreError, match="3 texts but 2 labels"):
        write_samples(tmp_path / "s", ["a", "b", "c"], [0, 1], [0, 1, 2], torch.ones(3, 2) / 2, ["x", "y"])
    with pytest.raises(StoreError, match="over 2 classes, 3 label names"):
        write_samples(tmp_path / "s", ["a"], [0], [0], torch.ones(1, 2) / 2, ["x", "y", "z"])


def test_not_a_store_and_other_versions(tmp_path):
    with pytest.raises(StoreError, match="not a sample store"):
        open_samples(tmp_path)
    small_store(tmp_path / "s")
    manifest = tmp_path / "s" / "knowledge.json"
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(StoreError, match="v99.*rebuild it"):
        open_samples(tmp_path / "s")


def test_missing_distributions_are_reported(tmp_path):
    small_store(tmp_path / "s")
    (tmp_path / "s" / "teacher.safetensors").unlink()
    with pytest.raises(StoreError, match="incomplete sample store"):
        open_samples(tmp_path / "s")
