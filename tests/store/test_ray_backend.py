"""The Ray backend writes the same store as the local builder (a local Ray instance)."""

from __future__ import annotations

import pytest

from kdforge.engine.pipeline import build_stores
from kdforge.recipe import validate_recipe
from kdforge.store import KnowledgeStore
from tests.conftest import classification_recipe

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'kdforge[ray]')")


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_build_writes_the_same_store_as_the_local_builder(classifier_teacher_dir, data_dir, tmp_path, local_ray):
    def recipe(path, backend):
        r = classification_recipe(classifier_teacher_dir, data_dir, [{"name": "kd"}, {"name": "hidden_mse"}])
        r["teacher"] = {
            "model": str(classifier_teacher_dir),
            "mode": "cached",
            "store": {"path": str(path), "shard_rows": 48, "backend": backend, "workers": 2},
        }
        return validate_recipe(r)

    build_stores(recipe(tmp_path / "local", "local"), tmp_path / "run")
    build_stores(recipe(tmp_path / "ray", "ray"), tmp_path / "run")
    local, remote = KnowledgeStore(tmp_path / "local"), KnowledgeStore(tmp_path / "ray")
    assert remote.manifest.complete and sorted(remote.manifest.shards) == [0, 1, 2, 3]
    assert remote.manifest.identity == local.manifest.identity
    for a, b in zip(local.rows, remote.rows, strict=True):
        assert set(a.arrays) == set(b.arrays)
        for name in a.arrays:
            assert a.arrays[name].shape == b.arrays[name].shape
            assert abs(a.arrays[name].astype("float64") - b.arrays[name].astype("float64")).max() < 1e-2, name
