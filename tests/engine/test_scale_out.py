"""The ready Accelerate configs in configs/accelerate/ (docs/scaling.md).

Every file loads with Accelerate's own config loader. ``ddp-cpu.yaml`` trains with 2 gloo
processes exactly like one process with the same global batch. FSDP and DeepSpeed need CUDA:
Accelerate turns them on for accelerator devices only, so on the CPU kdforge refuses their
configs with one line, and their smoke tests (a few steps, then the exported student must load
with the right shape) run only on a machine with a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kdforge.models import load_model
from tests.conftest import classification_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
HAS_CUDA = torch.cuda.is_available()
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_cuda = pytest.mark.skipif(
    not HAS_CUDA,
    reason="needs CUDA: Accelerate turns FSDP and DeepSpeed on for accelerator devices only "
    "(on the CPU, Accelerator(cpu=True) is plain MULTI_CPU data parallel)",
)


def write_recipe(tmp_path: Path, teacher: Path, data: Path, batch_size: int, **training) -> str:
    spec = classification_recipe(
        teacher,
        data,
        methods=[{"name": "kd", "temperature": 2.0}, {"name": "ce"}],
        batch_size=batch_size,
        lr=3e-4,
        **{"max_steps": 6, **training},
    )
    # without dropout each process computes exactly its share of the single-process batch
    spec["student"]["config"] = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    path = tmp_path / f"recipe-{batch_size}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def launch(config: str, recipe: str, out: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # this interpreter's accelerate (the CLI on PATH may belong to another environment)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config), *extra]
    command += ["-m", "kdforge.cli", "run", recipe, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def stage_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "stages" / "distill" / "model" / "model.safetensors"))


def load_config(name: str):
    """``name`` as ``accelerate launch --config_file`` reads it."""
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(CONFIGS / name))


def test_every_config_loads_with_accelerates_loader():
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    expected = {
        "ddp-cpu.yaml": DistributedType.MULTI_GPU,  # torchrun starts the processes; kdforge joins them by gloo
        "ddp-gpu.yaml": DistributedType.MULTI_GPU,
        "fsdp.yaml": DistributedType.FSDP,
        "deepspeed-zero3.yaml": DistributedType.DEEPSPEED,
    }
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(expected)
    for name, kind in expected.items():
        config = load_config(name)
        assert isinstance(config, ClusterConfig), name
        assert config.distributed_type == kind, name
        assert config.num_processes == 2 and config.num_machines == 1, name
        assert config.mixed_precision == "no", name  # precision comes from the recipe (training.bf16)

    fsdp = load_config("fsdp.yaml").fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # full shard
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "BertLayer"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the exported student is whole
    zero = load_config("deepspeed-zero3.yaml").deepspeed_config
    assert zero["zero_stage"] == 3 and zero["zero3_save_16bit_model"] is True
    # left to the recipe: Accelerate fills them from the run (training.gradient_accumulation)
    assert "gradient_accumulation_steps" not in zero and "gradient_clipping" not in zero


def test_fsdp_wraps_the_layer_class_of_the_test_models(classifier_teacher_dir):
    from accelerate.utils.dataclasses import get_module_class_from_name

    layer = load_config("fsdp.yaml").fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    teacher = load_model(str(classifier_teacher_dir))
    assert get_module_class_from_name(teacher, layer) is not None  # else Accelerate refuses to wrap


def test_ddp_cpu_config_trains_like_one_process(classifier_teacher_dir, data_dir, tmp_path):
    if HAS_CUDA:
        pytest.skip("ddp-cpu.yaml is for machines without CUDA (with CUDA, kdforge uses the GPUs)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdforge.cli",
            "run",
            write_recipe(tmp_path, classifier_teacher_dir, data_dir, 16),
            "--out",
            str(tmp_path / "one"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    two = launch("ddp-cpu.yaml", write_recipe(tmp_path, classifier_teacher_dir, data_dir, 8), tmp_path / "two")
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stderr.count("kdforge results in") == 1, "only the main process reports"
    one, both = stage_weights(tmp_path / "one"), stage_weights(tmp_path / "two")
    start = load_model(str(classifier_teacher_dir)).hf.state_dict()
    assert max((one[k] - start[k]).abs().max().item() for k in one if k in start) > 1e-4  # it trained...
    for key in one:  # ...and 2 processes x batch 8 gave what 1 process x batch 16 gave
        assert (one[key] - both[key]).abs().max() < 1e-5, key


@pytest.mark.parametrize("config", ["fsdp.yaml", "deepspeed-zero3.yaml"])
def test_sharding_configs_are_refused_on_cpu(config, classifier_teacher_dir, data_dir, tmp_path):
    if HAS_CUDA:
        pytest.skip("on a machine with CUDA the config is used, not refused")
    if config.startswith("deepspeed") and not HAS_DEEPSPEED:
        pytest.skip("deepspeed is not installed (accelerate launch stops before kdforge runs)")
    result = launch(config, write_recipe(tmp_path, classifier_teacher_dir, data_dir, 8), tmp_path / "out")
    assert result.returncode != 0
    kind = "FSDP" if config == "fsdp.yaml" else "DeepSpeed"
    assert f"accelerate launch asked for {kind}, but this machine has no CUDA device" in result.stderr
    assert "ddp-cpu.yaml" in result.stderr  # says what to use instead
    assert not (tmp_path / "out" / "stages").exists()  # refused before any training


SHARDED = [
    pytest.param("fsdp.yaml", marks=needs_cuda, id="fsdp"),
    pytest.param(
        "deepspeed-zero3.yaml",
        marks=[
            needs_cuda,
            pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install -e '.[deepspeed]')"),
        ],
        id="deepspeed-zero3",
    ),
]


@pytest.mark.parametrize("config", SHARDED)
def test_sharded_config_trains_and_exports_a_whole_student(config, classifier_teacher_dir, data_dir, tmp_path):
    """A few steps with a checkpoint in between; the exported student loads whole, with its shape."""
    processes = str(min(2, torch.cuda.device_count()))
    recipe = write_recipe(tmp_path, classifier_teacher_dir, data_dir, 8, max_steps=4, save_every=2)
    result = launch(config, recipe, tmp_path / "out", "--num_processes", processes, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("kdforge results in") == 1
    student = load_model(str(tmp_path / "out" / "student"))
    assert (student.num_layers, student.hidden_size, student.num_labels) == (2, 32, 2)
    weights = student.hf.state_dict()
    start = load_model(str(classifier_teacher_dir)).hf.state_dict()
    key = "bert.embeddings.word_embeddings.weight"
    assert weights[key].shape == start[key].shape  # gathered, not one process's shard
    assert (weights[key] - start[key]).abs().max() > 1e-6  # and trained
    assert student.predict(["the cat likes the ball and it was good ."]).shape == (1, 2)
