"""ONNX exports reload (as ``OnnxTextModel``) and give the PyTorch model's outputs; int8 stays close."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.errors import ModelError
from kdforge.export import export
from kdforge.models import build_student, load_model
from kdforge.models.loading import load_trainable
from kdforge.models.onnx_model import ONNX_FILE, OnnxTextModel
from kdforge.recipe import StudentSpec
from tests.conftest import sentences

runner = CliRunner()


@pytest.fixture(scope="module")
def embedding_student(embedding_teacher_dir):
    student, _ = build_student(load_model(str(embedding_teacher_dir)), StudentSpec(layers=[1, 3]))
    return student


@pytest.fixture(scope="module")
def classifier(classifier_teacher_dir):
    model = load_model(str(classifier_teacher_dir))
    model.hf.config.id2label = {0: "negative", 1: "positive"}
    model.hf.config.label2id = {"negative": 0, "positive": 1}
    return model


def _outputs(model, texts: list[str]) -> torch.Tensor:
    if model.kind == "classifier":
        return model.predict(texts, texts[::-1], batch_size=4)  # sentence pairs, several batches and paddings
    return model.encode(texts, batch_size=4)


@pytest.mark.parametrize("which", ["embedding_student", "classifier"])
def test_onnx_fp32_reloads_with_the_same_outputs(which, request, tmp_path):
    model = request.getfixturevalue(which)
    texts = sentences(11, seed=8)
    export(model, tmp_path / "onnx", "onnx")

    again = load_model(str(tmp_path / "onnx"))
    assert isinstance(again, OnnxTextModel) and again.kind == model.kind
    torch.testing.assert_close(_outputs(again, texts), _outputs(model, texts), atol=1e-4, rtol=0)
    meta = json.loads((tmp_path / "onnx" / "kdforge.json").read_text())
    assert (meta["kind"], meta["pooling"], meta["normalize"]) == (model.kind, model.pooling, model.normalize)
    if model.kind == "classifier":
        assert meta["labels"] == ["negative", "positive"] and again.num_labels == 2


@pytest.mark.parametrize(
    "student", [{"pqrnn": {"features": 64, "hidden": 16}}, {"static": {"dims": 16}}], ids=["pqrnn", "static"]
)
def test_students_without_transformer_blocks_export_too(student, embedding_teacher_dir, tmp_path):
    """A pQRNN (hashing, parallel scan) and a static table (read without special tokens) are HF models too."""
    model, _ = build_student(
        load_model(str(embedding_teacher_dir)), StudentSpec.model_validate(student), texts=sentences(40)
    )
    texts = sentences(9, seed=6)
    export(model, tmp_path / "onnx", "onnx")
    torch.testing.assert_close(
        load_model(str(tmp_path / "onnx")).encode(texts, 4), model.encode(texts, 4), atol=1e-4, rtol=0
    )


def test_onnx_graph_runs_alone_with_onnxruntime(embedding_student, tmp_path):
    """One session call from the tokenizer's output gives the final, normalized sentence embedding."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    export(embedding_student, tmp_path / "onnx", "onnx")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    session = ort.InferenceSession(str(tmp_path / "onnx" / ONNX_FILE), providers=["CPUExecutionProvider"])
    texts = sentences(3, seed=2)
    feed = dict(tokenizer(texts, padding=True, return_tensors="np"))
    (embedding,) = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
    torch.testing.assert_close(torch.from_numpy(embedding), embedding_student.encode(texts), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.from_numpy(embedding).norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("which", ["embedding_student", "classifier"])
def test_onnx_int8_is_close_and_smaller(which, request, tmp_path):
    model = request.getfixturevalue(which)
    texts = sentences(12, seed=4)
    export(model, tmp_path / "fp32", "onnx")
    export(model, tmp_path / "int8", "onnx-int8")

    int8 = load_model(str(tmp_path / "int8"))
    assert int8.format == "onnx-int8"
    cosine = torch.nn.functional.cosine_similarity(_outputs(int8, texts), _outputs(model, texts), dim=-1)
    assert cosine.min() > 0.98
    assert (tmp_path / "int8" / ONNX_FILE).stat().st_size < (tmp_path / "fp32" / ONNX_FILE).stat().st_size
    assert int8.num_parameters() == load_model(str(tmp_path / "fp32")).num_parameters()


def test_cli_exports_every_format_and_each_reloads(embedding_teacher_dir, tmp_path):
    model = load_model(str(embedding_teacher_dir))
    texts = sentences(6, seed=5)
    for fmt, atol in (("hf", 1e-6), ("sentence-transformers", 1e-6), ("onnx", 1e-4), ("onnx-int8", 0.05)):
        target = tmp_path / fmt
        result = runner.invoke(app, ["export", str(embedding_teacher_dir), "--format", fmt, "--out", str(target)])
        assert result.exit_code == 0, result.output
        assert f"({fmt})" in result.output
        torch.testing.assert_close(load_model(str(target)).encode(texts), model.encode(texts), atol=atol, rtol=0)


def test_cli_unknown_format_is_one_line(embedding_teacher_dir, tmp_path):
    result = runner.invoke(app, ["export", str(embedding_teacher_dir), "--format", "tflite", "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown export format 'tflite'" in lines[0] and "onnx-int8" in lines[0]


def test_an_onnx_folder_is_for_inference_only(classifier, tmp_path):
    export(classifier, tmp_path / "onnx", "onnx")
    with pytest.raises(ModelError, match="inference only"):
        load_trainable(str(tmp_path / "onnx"))
    with pytest.raises(ModelError, match="is of kind classifier, not embedding"):
        load_model(str(tmp_path / "onnx"), kind="embedding")
    with pytest.raises(ModelError, match="export from the PyTorch folder"):
        export(load_model(str(tmp_path / "onnx")), tmp_path / "again", "onnx")


def test_language_models_do_not_export_to_onnx(embedding_teacher_dir, tmp_path):
    model = load_model(str(embedding_teacher_dir), kind="masked_lm")
    with pytest.raises(
        ModelError, match=r"classifiers, taggers and joint intent \+ slot models; this model is of kind masked_lm"
    ):
        export(model, tmp_path / "mlm", "onnx")


@pytest.mark.parametrize(
    "pairs",
    [
        {"compare_pairs": True},
        {"compare_pairs": "aligned", "exact_match": True},
        {"compare_pairs": True, "exact_match": True, "word_overlap": True},
    ],
)
def test_a_pair_comparing_pqrnn_exports_with_its_segments(classifier_teacher_dir, tmp_path, pairs):
    """The graph takes token_type_ids, so the exported student still tells the two texts apart."""
    model, _ = build_student(
        load_model(str(classifier_teacher_dir)),
        StudentSpec.model_validate({"pqrnn": {"features": 64, "hidden": 16, **pairs}}),
    )
    first, second = sentences(5, seed=1), sentences(5, seed=2)
    export(model, tmp_path / "onnx", "onnx")
    graph = load_model(str(tmp_path / "onnx"))
    torch.testing.assert_close(graph.predict(first, second), model.predict(first, second), atol=1e-4, rtol=0)
    torch.testing.assert_close(graph.predict(first), model.predict(first), atol=1e-4, rtol=0)
