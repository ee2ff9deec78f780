"""Short distillation runs on tiny models move the student measurably towards the teacher."""

from __future__ import annotations

import math

import pytest
import torch

import kdforge
from kdforge.errors import IncompatibleError, TrainingError
from kdforge.models import build_student, load_model
from kdforge.recipe import StudentSpec, validate_recipe
from tests.conftest import classification_recipe, sentences, sts_recipe


def embedding_gap(teacher, student, texts) -> float:
    return float(((teacher.encode(texts) - student.encode(texts)) ** 2).sum(-1).mean())


def prediction_gap(teacher, student, texts) -> float:
    t = torch.log_softmax(teacher.predict(texts), -1)
    s = torch.log_softmax(student.predict(texts), -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


@pytest.mark.parametrize(
    "methods",
    [
        [{"name": "embedding_mse"}],
        [{"name": "cosine", "on": "embedding"}],
        [{"name": "embedding_mse"}, {"name": "hidden_mse", "weight": 0.5}, {"name": "attention", "weight": 0.1}],
    ],
    ids=["embedding_mse", "cosine", "combined"],
)
def test_embedding_distillation_closes_gap(embedding_teacher_dir, data_dir, tmp_path, methods):
    teacher = load_model(str(embedding_teacher_dir))
    fresh = build_student(teacher, StudentSpec(num_layers=1, init="fresh"))[0]
    held_out = sentences(48, seed=1)
    before = embedding_gap(teacher, fresh, held_out)

    recipe = sts_recipe(embedding_teacher_dir, data_dir, max_steps=60, lr=3e-3)
    recipe["student"] = {"num_layers": 1, "init": "fresh"}
    recipe["methods"] = methods
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    after = embedding_gap(teacher, student, held_out)

    assert after < 0.5 * before, (before, after)
    assert results["agreement"]["similarity_spearman"] > 0


def test_kd_closes_prediction_gap(classifier_teacher_dir, data_dir, tmp_path):
    teacher = load_model(str(classifier_teacher_dir))
    texts = sentences(48, seed=1)
    start = build_student(teacher, StudentSpec(num_layers=1, init="fresh"))[0]
    before = prediction_gap(teacher, start, texts)

    recipe = classification_recipe(classifier_teacher_dir, data_dir, max_steps=60, lr=3e-3)
    recipe["student"] = {"num_layers": 1, "init": "fresh"}
    recipe["methods"] = [{"name": "kd", "temperature": 2.0}, {"name": "hidden_mse", "weight": 0.1}]
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    after = prediction_gap(teacher, load_model(str(tmp_path / "student")), texts)

    assert after < 0.5 * before, (before, after)
    assert results["agreement"]["prediction_agreement"] >= 50
    assert {"accuracy", "f1", "mcc"} <= set(results["metrics"]["student"]["eval"])


def test_finetune_then_distill_chain(embedding_teacher_dir, data_dir, tmp_path):
    """A finetune stage makes a classifier teacher from an encoder; the next stage distils it."""
    recipe = {
        "name": "chain",
        "task": {"name": "classification"},
        "data": {"train": [str(data_dir / "sst.tsv")], "eval": str(data_dir / "sst-dev.tsv")},
        "training": {"batch_size": 16, "lr": 2e-3, "max_steps": 60, "log_every": 5},
        "output": {"benchmark": False},
        "stages": [
            {
                "name": "teacher",
                "kind": "finetune",
                "student": str(embedding_teacher_dir),
                "training": {"max_steps": 200},
            },
            {
                "name": "distill",
                "teacher": "stage:teacher",
                "student": {"num_layers": 2},
                "methods": [{"name": "kd", "temperature": 2}, {"name": "ce", "weight": 0.5}],
            },
        ],
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    first, second = results["stages"]
    # the synthetic labels are a keyword rule: a fine-tuned 4-layer teacher learns it
    assert first["metrics"]["student"]["eval"]["accuracy"] >= 90
    assert second["metrics"]["teacher"]["eval"]["accuracy"] == first["metrics"]["student"]["eval"]["accuracy"]
    assert second["metrics"]["student"]["eval"]["accuracy"] >= 80
    assert (tmp_path / "student" / "config.json").is_file()

    again = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert all(stage["skipped"] for stage in again["stages"])
    # a rerun still reports how each stage was trained
    assert [s["training"]["steps"] for s in again["stages"]] == [s["training"]["steps"] for s in results["stages"]]


def test_nan_loss_stops_with_one_line(embedding_teacher_dir, data_dir, tmp_path):
    recipe = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, lr=1e6, max_grad_norm=None, max_steps=30))
    with pytest.raises(TrainingError) as caught:
        kdforge.run(recipe, tmp_path, show=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "loss is nan" in message.lower() or "loss is inf" in message.lower()
    assert "embedding_mse=" in message and "lower training.lr" in message


def test_incompatible_method_is_reported_before_training(embedding_teacher_dir, data_dir, tmp_path):
    recipe = sts_recipe(embedding_teacher_dir, data_dir)
    recipe["methods"] = [{"name": "kd"}]
    with pytest.raises(IncompatibleError, match=r"methods\[0\] \(kd\): kd needs prediction logits of the same kind"):
        kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert not (tmp_path / "stages" / "distill" / "checkpoints").exists()


def test_teacher_outputs_are_reused_after_first_epoch(embedding_teacher_dir, data_dir, tmp_path):
    recipe = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, max_steps=30))
    results = kdforge.run(recipe, tmp_path / "cached", show=False)
    assert results["training"]["teacher_cache_hits"] > 0
    recipe_off = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, max_steps=30, teacher_cache="off"))
    off = kdforge.run(recipe_off, tmp_path / "live", show=False)
    assert off["training"]["teacher_cache_hits"] == 0
    # cached teacher outputs are the same numbers: the losses match step by step
    assert results["training"]["final_loss"] == pytest.approx(off["training"]["final_loss"], rel=1e-5)


def test_bf16_mixed_precision_trains_and_keeps_fp32_weights(embedding_teacher_dir, data_dir, tmp_path):
    recipe = validate_recipe(sts_recipe(embedding_teacher_dir, data_dir, bf16=True, max_steps=20, lr=3e-3))
    results = kdforge.run(recipe, tmp_path, show=False)
    losses = results["training"]
    assert losses["steps"] == 20 and losses["final_loss"] == losses["final_loss"]  # finite, not NaN
    student = load_model(str(tmp_path / "student"))
    assert next(student.hf.parameters()).dtype == torch.float32


def test_pd_chain_pretrains_a_cut_of_a_given_model_then_distils_into_it(classifier_teacher_dir, data_dir, tmp_path):
    """PD as a recipe: MLM pre-training of a compact model cut from a given encoder, then kd from the teacher."""
    from tests.language_models import masked_lm_folder

    teacher = load_model(str(classifier_teacher_dir))
    with torch.no_grad():
        teacher.hf.classifier.weight.mul_(40)  # confident predictions, not one class for everything
    teacher.hf.save_pretrained(tmp_path / "teacher")
    teacher.tokenizer.save_pretrained(tmp_path / "teacher")
    encoder = masked_lm_folder(tmp_path / "encoder")
    recipe = {
        "name": "pd",
        "data": {"train": [str(data_dir / "sst.tsv")], "eval": str(data_dir / "sst-dev.tsv")},
        "training": {"batch_size": 16, "lr": 2e-3, "max_steps": 40, "log_every": 5},
        "output": {"benchmark": False},
        "stages": [
            {
                "name": "pretrain",
                "kind": "finetune",
                "task": {"name": "mlm"},
                "student": {"model": str(encoder), "layers": [0, 3]},
                "training": {"max_steps": 20},
            },
            {
                "name": "distill",
                "teacher": str(tmp_path / "teacher"),
                "student": "stage:pretrain",
                "task": {"name": "classification"},
                "methods": [{"name": "kd", "temperature": 2.0}],
            },
        ],
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path / "run", show=False)
    pretrain, _ = results["stages"]
    assert pretrain["training"]["steps"] == 20 and "perplexity" in pretrain["metrics"]["student"]["eval"]
    student = load_model(str(tmp_path / "run" / "student"))
    assert student.kind == "classifier" and student.config.num_hidden_layers == 2

    texts = sentences(48, seed=1)
    t = torch.log_softmax(teacher.predict(texts), -1)
    uniform_gap = float((t.exp() * (t + math.log(2))).sum(-1).mean())  # KL(teacher || uniform)
    assert prediction_gap(teacher, student, texts) < 0.5 * uniform_gap
