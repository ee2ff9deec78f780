"""Store builds across processes: two `accelerate launch` processes split the shards; a kill -9 resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from kdforge.store import KnowledgeStore
from tests.conftest import classification_recipe
from tests.engine.test_distributed import LAUNCH


def recipe_file(teacher, data, tmp_path, store, shard_rows: int) -> str:
    recipe = classification_recipe(teacher, data, [{"name": "kd"}, {"name": "hidden_mse"}])
    recipe["teacher"] = {
        "model": str(teacher),
        "mode": "cached",
        "store": {"path": str(store), "shard_rows": shard_rows},
    }
    path = tmp_path / f"recipe-{store.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def build(recipe: str, out, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kdforge.cli", "store", "build", recipe, "--out", str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_two_processes_each_write_their_shards_and_the_manifest_is_merged(classifier_teacher_dir, data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    store = tmp_path / "two"
    launch = [*LAUNCH[:-1], "store", "build", recipe_file(classifier_teacher_dir, data_dir, tmp_path, store, 32)]
    launched = subprocess.run([*launch, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr[-2000:]
    parts = {p.name: set(json.loads(p.read_text())) for p in (store / "parts").glob("*.json")}
    assert parts == {"rank-0.json": {"0", "2", "4"}, "rank-1.json": {"1", "3"}}  # every other shard each
    two = KnowledgeStore(store)
    assert two.manifest.complete and sorted(two.manifest.shards) == [0, 1, 2, 3, 4]

    single = build(recipe_file(classifier_teacher_dir, data_dir, tmp_path, tmp_path / "one", 32), tmp_path / "run")
    assert single.returncode == 0, single.stderr[-2000:]
    one = KnowledgeStore(tmp_path / "one")
    for a, b in zip(one.rows, two.rows, strict=True):
        assert all(abs(a.arrays[k].astype("float64") - b.arrays[k].astype("float64")).max() < 1e-2 for k in a.arrays)


def test_a_build_killed_with_sigkill_resumes_and_keeps_its_finished_shards(classifier_teacher_dir, data_dir, tmp_path):
    store = tmp_path / "store"
    recipe = recipe_file(classifier_teacher_dir, data_dir, tmp_path, store, 4)  # 40 small shards
    command = [sys.executable, "-m", "kdforge.cli", "store", "build", recipe, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (store / "shard-00001.safetensors").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((store / "manifest.json").read_text())
    if manifest["complete"]:
        pytest.skip("the build finished before the kill landed")
    finished = json.loads((store / "parts" / "rank-0.json").read_text())  # listed before the kill
    kept = {entry["file"]: (store / entry["file"]).stat().st_mtime_ns for entry in finished.values()}
    assert kept, "the kill came after at least one finished shard"

    rerun = build(recipe, tmp_path / "run")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "knowledge store resuming" in rerun.stderr
    assert all((store / name).stat().st_mtime_ns == written for name, written in kept.items())  # not redone
    resumed = KnowledgeStore(store)
    assert resumed.manifest.complete and len(resumed.manifest.shards) == 40
    assert not list(store.glob("*.partial"))
