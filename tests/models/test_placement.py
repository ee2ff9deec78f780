"""Teacher placement: precision, device and CPU offload, and what reaches the methods."""

from __future__ import annotations

import pytest
import torch

import kdforge
from kdforge.engine.collate import Collator
from kdforge.engine.teacher_source import TeacherSource
from kdforge.errors import ModelError, RecipeError
from kdforge.evaluate.size import model_size
from kdforge.methods.kd import KD
from kdforge.models import load_model
from kdforge.models.placement import memory_line, place_teacher
from kdforge.recipe import validate_recipe
from kdforge.recipe.schema import TeacherSpec
from tests.conftest import classification_recipe, sentences

TEXTS = sentences(32, seed=1)
CPU = torch.device("cpu")


def placed(folder, **spec):
    teacher = load_model(str(folder))
    report = place_teacher(teacher, TeacherSpec(model=str(folder), **spec), CPU)
    return teacher, report


# Tolerances: bf16 keeps 8 mantissa bits (~0.4% per rounding), int8 rounds each linear weight to
# 1/127 of its tensor's range; fp16 keeps 11 bits. Errors are measured against the output's scale.
@pytest.mark.parametrize(("dtype", "logit_tol", "min_cosine"), [("bf16", 0.05, 0.999), ("int8", 0.1, 0.999)])
def test_reduced_precision_teacher_stays_close_to_fp32(
    classifier_teacher_dir, embedding_teacher_dir, dtype, logit_tol, min_cosine
):
    reference = load_model(str(classifier_teacher_dir)).predict(TEXTS)
    teacher, report = placed(classifier_teacher_dir, dtype=dtype)
    logits = teacher.predict(TEXTS)
    scale = reference.abs().max()
    assert (logits - reference).abs().max() <= logit_tol * scale
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    fp32_bytes = sum(p.numel() * 4 for p in load_model(str(classifier_teacher_dir)).hf.parameters())
    assert report.dtype == dtype and report.weight_bytes < 0.75 * fp32_bytes
    assert teacher.num_parameters() == report.parameters == load_model(str(classifier_teacher_dir)).num_parameters()

    reference = load_model(str(embedding_teacher_dir)).encode(TEXTS)
    encoder, _ = placed(embedding_teacher_dir, dtype=dtype)
    cosine = torch.nn.functional.cosine_similarity(encoder.encode(TEXTS), reference, dim=-1)
    assert cosine.min() >= min_cosine


def test_weights_really_change_precision(classifier_teacher_dir):
    teacher, _ = placed(classifier_teacher_dir, dtype="bf16")
    assert {p.dtype for p in teacher.parameters()} == {torch.bfloat16}
    teacher, _ = placed(classifier_teacher_dir, dtype="int8")
    quantized = [m for m in teacher.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantized and not any(isinstance(m, torch.nn.Linear) for m in teacher.modules())


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "int8"])
def test_teacher_views_handed_to_methods_are_float32(classifier_teacher_dir, dtype):
    teacher, _ = placed(classifier_teacher_dir, dtype=dtype)
    batch = Collator(load_model(str(classifier_teacher_dir)), [teacher])(
        [{"text": t, "index": i} for i, t in enumerate(TEXTS[:4])]
    )
    views = TeacherSource(teacher, frozenset({"logits", "hidden_states"}), cache=False)(batch)
    assert views.logits.dtype == torch.float32
    assert {h.dtype for h in views.hidden_states} == {torch.float32}
    assert views.attention_mask.dtype == batch.teacher_inputs[0]["attention_mask"].dtype  # not cast


def test_offload_on_cpu_gives_the_same_outputs_through_hooks(embedding_teacher_dir):
    reference = load_model(str(embedding_teacher_dir)).eval()
    teacher, report = placed(embedding_teacher_dir, offload=True, device="cpu")
    assert report.offloaded and report.device == CPU
    assert {p.device.type for p in teacher.hf.parameters()} == {"meta"}  # weights live in the hooks' map
    assert hasattr(teacher.hf, "_hf_hook")
    hooked = [m for m in teacher.hf.modules() if getattr(getattr(m, "_hf_hook", None), "offload", False)]
    assert hooked and all(m._hf_hook.execution_device == CPU for m in hooked)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.device == CPU  # where inputs go, not the meta device of the parameters

    torch.testing.assert_close(teacher.encode(TEXTS), reference.encode(TEXTS), atol=1e-5, rtol=1e-5)
    inputs = reference.tokenize(TEXTS[:4])
    needs = frozenset({"embedding", "hidden_states"})
    with torch.no_grad():
        got, want = teacher(inputs, needs), reference(inputs, needs)
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_placing_again_keeps_or_refuses(classifier_teacher_dir):
    teacher, report = placed(classifier_teacher_dir, dtype="int8")
    assert place_teacher(teacher, TeacherSpec(model="clf", dtype="int8"), CPU) is report  # a second train() call
    with pytest.raises(ModelError, match="already runs int8 on cpu, which cannot be undone"):
        place_teacher(teacher, TeacherSpec(model="clf"), CPU)


@pytest.mark.parametrize("spec", [{"dtype": "int8"}, {"offload": True, "device": "cpu"}])
def test_packed_or_offloaded_teacher_still_measures_and_predicts(classifier_teacher_dir, spec):
    fp32 = load_model(str(classifier_teacher_dir))
    teacher, report = placed(classifier_teacher_dir, **spec)
    size = model_size(teacher)  # save_pretrained cannot write int8-packed or offloaded weights
    assert size["parameters"] == fp32.num_parameters()
    assert size["disk_mb"] == pytest.approx(report.weight_bytes / 2**20)
    assert teacher.predict(TEXTS).shape == (len(TEXTS), 2)


def test_memory_line_names_teacher_and_student(classifier_teacher_dir):
    teacher, report = placed(classifier_teacher_dir, dtype="bf16")
    student = load_model(str(classifier_teacher_dir))
    line = memory_line([teacher], student)
    assert "\n" not in line
    assert line.startswith("memory: teacher ") and "(bf16 on cpu)" in line and "student " in line
    assert f"{report.weight_bytes / 2**10:.1f} KB" in line


@pytest.mark.parametrize(
    ("teacher", "says"),
    [
        ({"device": "gpu"}, "teacher.device: teacher device 'gpu' is not one of: auto, cpu, cuda, cuda:N"),
        ({"device": "cuda:x"}, "is not one of: auto, cpu, cuda, cuda:N"),
        ({"dtype": "int4"}, "teacher.dtype: Input should be 'fp32', 'bf16', 'fp16' or 'int8'"),
        ({"dtype": "int8", "offload": True}, "drop 'offload'"),
        ({"dtype": "int8", "device": "cuda:0"}, "runs on the CPU only"),
    ],
)
def test_bad_placement_in_a_recipe_is_one_line(classifier_teacher_dir, data_dir, teacher, says):
    recipe = classification_recipe(classifier_teacher_dir, data_dir)
    recipe["teacher"] = {"model": str(classifier_teacher_dir), **teacher}
    with pytest.raises(RecipeError) as err:
        validate_recipe(recipe)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_defaults_keep_the_teacher_as_before(classifier_teacher_dir, data_dir):
    recipe = validate_recipe(classification_recipe(classifier_teacher_dir, data_dir))
    spec = recipe.stages[0].teacher
    assert (spec.dtype, spec.device, spec.offload) == ("fp32", "auto", False)
    assert not {"dtype", "device", "offload"} & set(spec.model_dump(exclude_defaults=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(classifier_teacher_dir):
    with pytest.raises(ModelError) as err:
        placed(classifier_teacher_dir, device="cuda:1")
    assert str(err.value) == "teacher device 'cuda:1': CUDA is not available on this machine; use auto or cpu"


def test_int8_on_a_gpu_training_device_is_one_line(classifier_teacher_dir):
    teacher = load_model(str(classifier_teacher_dir))
    spec = TeacherSpec(model="clf", dtype="int8")  # device auto: the training device, here a GPU
    with pytest.raises(ModelError) as err:
        place_teacher(teacher, spec, torch.device("cuda:0"))
    assert "int8 (dynamic quantization) runs on the CPU only" in str(err.value) and "\n" not in str(err.value)


def test_bf16_teacher_run_logs_memory_and_feeds_float32(
    classifier_teacher_dir, data_dir, tmp_path, capsys, monkeypatch
):
    seen: list[torch.dtype] = []
    forward = KD.forward

    def recording(self, teacher, student, batch):
        seen.append(teacher.logits.dtype)
        return forward(self, teacher, student, batch)

    monkeypatch.setattr(KD, "forward", recording)
    recipe = classification_recipe(classifier_teacher_dir, data_dir, max_steps=4)
    recipe["teacher"] = {"model": str(classifier_teacher_dir), "dtype": "bf16"}
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)

    log = capsys.readouterr().err
    memory = [line for line in log.splitlines() if "memory: teacher" in line]
    assert len(memory) == 1 and "(bf16 on cpu)" in memory[0] and "student" in memory[0], log
    assert seen and set(seen) == {torch.float32}
    assert results["training"]["steps"] == 4
    assert "accuracy" in results["metrics"]["teacher"]["eval"]  # the placed teacher is evaluated too
