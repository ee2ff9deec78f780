"""Exported students load with the plain libraries and give the same outputs."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import ModelError
from kdforge.export import export
from kdforge.models import build_student, load_model
from kdforge.recipe import StudentSpec
from tests.conftest import sentences


def test_sentence_transformers_folder_reloads_identically(embedding_teacher_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    teacher = load_model(str(embedding_teacher_dir))
    student, _ = build_student(teacher, StudentSpec(layers=[1, 3]))
    texts = sentences(10, seed=9)
    export(student, tmp_path / "st", "sentence-transformers")

    plain = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    torch.testing.assert_close(plain.encode(texts, convert_to_tensor=True), student.encode(texts), atol=1e-6, rtol=0)
    again = load_model(str(tmp_path / "st"))
    assert (again.num_layers, again.pooling, again.normalize) == (2, "mean", True)
    torch.testing.assert_close(again.encode(texts), student.encode(texts), atol=1e-6, rtol=0)


def test_hf_classifier_reloads_with_auto_class(classifier_teacher_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    teacher = load_model(str(classifier_teacher_dir))
    student, _ = build_student(teacher, StudentSpec(num_layers=2))
    student.hf.config.id2label = {0: "negative", 1: "positive"}
    student.hf.config.label2id = {"negative": 0, "positive": 1}
    texts = sentences(6, seed=3)
    export(student, tmp_path / "clf")

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "clf")
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits, student.predict(texts), atol=1e-5, rtol=0)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert not list((tmp_path / "clf").glob("*.bin")), "weights must be safetensors"


def test_classifier_cannot_be_a_sentence_transformer(classifier_teacher_dir, tmp_path):
    model = load_model(str(classifier_teacher_dir))
    with pytest.raises(ModelError, match="only embedding models"):
        export(model, tmp_path / "x", "sentence-transformers")
