"""The knowledge store: stored views equal live ones, stores are reused only when they match, builds resume."""

from __future__ import annotations

import json

import pytest
import torch

import kdforge
from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import build_stores
from kdforge.errors import IncompatibleError, RecipeError, StoreError
from kdforge.models import load_model
from kdforge.recipe import validate_recipe
from kdforge.store import KnowledgeStore
from kdforge.store.codec import _logits, expand_logits, quantize
from tests.conftest import classification_recipe
from tests.language_models import causal_lm_folder


class Killed(Exception):
    pass


FEATURES = [{"name": "kd", "temperature": 2.0}, {"name": "hidden_mse"}]


def cached(recipe: dict, path=None, **store) -> dict:
    recipe["teacher"] = {"model": recipe["teacher"], "mode": "cached", "store": {"shard_rows": 64, **store}}
    if path is not None:
        recipe["teacher"]["store"]["path"] = str(path)
    return recipe


@pytest.fixture(autouse=True)
def _store_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFORGE_STORE_DIR", str(tmp_path / "stores"))


def test_int8_codes_reconstruct_within_half_a_step():
    x = torch.randn(6, 40)
    codes, scale = quantize(x)
    assert codes.dtype == torch.int8
    assert ((codes.float() * scale[:, None] - x).abs() <= scale[:, None] / 2 + 1e-6).all()


def test_top_k_logits_keep_the_top_probabilities_and_the_tail_mass():
    logits = torch.randn(3, 50) * 3
    stored = _logits(logits, top_k=8)
    assert set(stored) == {"logits.values", "logits.ids", "logits.tail"} and stored["logits.ids"].shape == (3, 8)
    rebuilt = expand_logits(stored["logits.values"], stored["logits.ids"], stored["logits.tail"], 50).softmax(-1)
    original = logits.softmax(-1)
    ids = stored["logits.ids"].long()
    torch.testing.assert_close(rebuilt.gather(-1, ids), original.gather(-1, ids), atol=2e-3, rtol=2e-3)
    assert torch.allclose(rebuilt.sum(-1), torch.ones(3), atol=1e-3)
    rest = torch.ones_like(original, dtype=torch.bool).scatter(-1, ids, False)
    torch.testing.assert_close((rebuilt * rest).sum(-1), (original * rest).sum(-1), atol=2e-3, rtol=1e-2)
    assert set(_logits(logits[:, :5], top_k=8)) == {"logits"}  # few classes: kept dense


def training_rows(data_dir, ids: list[int]) -> list[dict]:
    lines = (data_dir / "sst.tsv").read_text().splitlines()[1:]
    return [{"text": lines[i].split("\t")[0], "label": int(lines[i].split("\t")[1]), "index": i} for i in ids]


def test_stored_views_equal_the_live_teacher(classifier_teacher_dir, data_dir, tmp_path):
    methods = [*FEATURES, {"name": "attention", "scores": "probs", "weight": 0.1}]
    recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, methods), tmp_path / "store")
    assert build_stores(validate_recipe(recipe), tmp_path / "run") == [str(tmp_path / "store")]
    store = KnowledgeStore(tmp_path / "store")
    views = store.manifest.identity.views
    assert views.hidden_layers and views.attention_layers  # found by probing the methods
    assert store.manifest.rows == 160 and len(store.manifest.shards) == 3

    teacher = load_model(str(classifier_teacher_dir))
    ids = [3, 100, 42, 159]
    inputs = Collator(teacher, [teacher], 64)(training_rows(data_dir, ids)).teacher_inputs[0]
    needs = frozenset({"logits", "hidden_states", "attentions"})
    with torch.no_grad():
        live = teacher(inputs, needs)
    stored = store.views(ids, inputs["attention_mask"], needs)
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(stored.logits, live.logits)  # two classes: kept dense, fp32
    for layer in views.hidden_layers:  # fp16
        torch.testing.assert_close(
            stored.hidden_states[layer][mask], live.hidden_states[layer][mask], atol=1e-2, rtol=1e-2
        )
    pairs = mask[:, None, :, None] & mask[:, None, None, :]
    for block in views.attention_layers:
        expected = live.attentions[block - 1].masked_fill(~pairs, 0)
        torch.testing.assert_close(stored.attentions[block - 1], expected, atol=1e-3, rtol=1e-2)
    unstored = next(i for i in range(teacher.num_layers + 1) if i not in views.hidden_layers)
    with pytest.raises(StoreError, match=f"holds hidden_states of layers .* but a method reads {unstored}"):
        stored.hidden_states[unstored]


def test_cached_run_matches_online_and_the_second_run_reuses_the_store(classifier_teacher_dir, data_dir, tmp_path):
    online = kdforge.run(
        validate_recipe(classification_recipe(classifier_teacher_dir, data_dir, FEATURES, max_steps=16)),
        tmp_path / "online",
        show=False,
    )
    recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES, max_steps=16))
    first = kdforge.run(validate_recipe(recipe), tmp_path / "first", show=False)
    [folder] = first["training"]["stores"]
    shard = next((tmp_path / "stores").glob("*/shard-00000.safetensors"))
    written = shard.stat().st_mtime_ns
    second = kdforge.run(validate_recipe(recipe), tmp_path / "second", show=False)

    assert first["training"]["teacher_seconds"] == 0 and first["training"]["teacher_cache_hits"] == 16
    assert first["training"]["final_loss"] == pytest.approx(online["training"]["final_loss"], rel=1e-3)
    assert second["training"]["stores"] == [folder] and shard.stat().st_mtime_ns == written  # reused, not rebuilt
    assert second["training"]["final_loss"] == first["training"]["final_loss"]


def test_a_store_built_for_other_data_is_refused(classifier_teacher_dir, data_dir, tmp_path):
    recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "store")
    build_stores(validate_recipe(recipe), tmp_path / "run")
    other = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "store")
    other["data"]["train"] = [str(data_dir / "sst-dev.tsv")]
    with pytest.raises(StoreError, match=r"the store in .*store was built for another data;"):
        build_stores(validate_recipe(other), tmp_path / "run")


def test_a_killed_build_resumes_from_its_last_complete_shard(classifier_teacher_dir, data_dir, tmp_path, monkeypatch):
    import kdforge.store.builder as builder

    recipe = validate_recipe(cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "s"))
    real, calls = builder.write_shard, []

    def dies_on_the_second_shard(path, tensors):
        calls.append(path.name)
        if len(calls) == 2:
            raise Killed  # what a kill leaves: one shard written, the next never finished
        return real(path, tensors)

    monkeypatch.setattr(builder, "write_shard", dies_on_the_second_shard)
    with pytest.raises(Killed):
        build_stores(recipe, tmp_path / "run")
    with pytest.raises(StoreError, match="is incomplete; rerun `kdforge store build`"):
        KnowledgeStore(tmp_path / "s")
    first = (tmp_path / "s" / "shard-00000.safetensors").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(builder, "write_shard", lambda path, tensors: calls.append(path.name) or real(path, tensors))
    build_stores(recipe, tmp_path / "run")
    assert calls == ["shard-00001.safetensors", "shard-00002.safetensors"]  # shard 0 kept
    assert (tmp_path / "s" / "shard-00000.safetensors").stat().st_mtime_ns == first
    resumed = KnowledgeStore(tmp_path / "s")
    monkeypatch.setattr(builder, "write_shard", real)
    fresh_recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "fresh")
    build_stores(validate_recipe(fresh_recipe), tmp_path / "run")
    fresh = KnowledgeStore(tmp_path / "fresh")
    for number in range(3):
        a, b = resumed.rows[number].arrays, fresh.rows[number].arrays
        assert set(a) == set(b) and all((a[k] == b[k]).all() for k in a)


@pytest.fixture
def built(classifier_teacher_dir, data_dir, tmp_path):
    recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "store")
    build_stores(validate_recipe(recipe), tmp_path / "run")
    return tmp_path / "store"


def test_a_corrupted_or_truncated_shard_is_reported_with_a_rebuild_hint(built):
    shard = built / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"shard-00001.safetensors does not match its checksum \(corrupted\); delete"):
        KnowledgeStore(built)
    shard.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(StoreError, match="shard-00001.safetensors is missing or truncated"):
        KnowledgeStore(built, verify=False)


def test_a_store_of_another_format_is_refused(built):
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["format"] = 0
    (built / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="has format 0, this kdforge reads format 1; rebuild it"):
        KnowledgeStore(built)


def test_views_a_store_cannot_hold_are_refused_before_training(classifier_teacher_dir, data_dir, tmp_path):
    qkv = cached(classification_recipe(classifier_teacher_dir, data_dir, [{"name": "attention"}]))  # pre-softmax scores
    with pytest.raises(IncompatibleError, match="need the teacher's qkv, which a knowledge store does not hold"):
        kdforge.run(validate_recipe(qkv), tmp_path / "qkv", show=False)
    augmented = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES, augment={"share": 0.5}))
    with pytest.raises(RecipeError, match="training.augment makes new sentences each epoch"):
        kdforge.run(validate_recipe(augmented), tmp_path / "augment", show=False)
    assert not list((tmp_path / "qkv").glob("stages/*/checkpoints/*"))


def test_language_model_logits_are_stored_as_top_k(data_dir, tmp_path):
    teacher = causal_lm_folder(tmp_path / "lm")
    recipe = {
        "name": "tiny-lm",
        "teacher": {"model": str(teacher), "mode": "cached", "store": {"top_k": 8, "path": str(tmp_path / "store")}},
        "student": {"num_layers": 1},
        "task": {"name": "lm"},
        "data": {"train": [str(data_dir / "train.txt")], "eval": str(data_dir / "held_out.txt")},
        "methods": [{"name": "forward_kl"}],
        "training": {"batch_size": 16, "lr": 2e-3, "max_steps": 6},
        "output": {"benchmark": False},
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path / "run", show=False)
    store = KnowledgeStore(tmp_path / "store")
    arrays = store.rows[0].arrays
    assert arrays["token_logits.values"].shape[1] == 8 and arrays["token_logits.ids"].dtype.name == "int32"
    assert len(arrays["token_logits.tail"]) == int(arrays["length"].sum())  # one row per real token
    assert results["training"]["teacher_seconds"] == 0 and results["training"]["final_loss"] > 0


def test_a_full_disk_while_writing_a_shard_is_one_line(classifier_teacher_dir, data_dir, tmp_path, monkeypatch):
    import errno

    import kdforge.store.shards as shards

    def no_space(tensors, filename):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards, "save_file", no_space)
    recipe = cached(classification_recipe(classifier_teacher_dir, data_dir, FEATURES), tmp_path / "store")
    with pytest.raises(
        StoreError, match=r"cannot write store shard .*shard-00000.safetensors: No space left on device"
    ):
        build_stores(validate_recipe(recipe), tmp_path / "run")
    assert not list((tmp_path / "store").glob("*.partial"))
