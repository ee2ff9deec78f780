"""Loading teachers: folders, aliases and clear errors."""

from __future__ import annotations

import pytest

from kdforge.errors import ModelError
from kdforge.models import load_model


def test_sentence_transformers_folder_keeps_pooling_and_normalize(embedding_teacher_dir):
    model = load_model(str(embedding_teacher_dir))
    assert (model.kind, model.pooling, model.normalize) == ("embedding", "mean", True)
    norms = model.encode(["a dog eats some bread ."]).norm(dim=-1)
    assert norms.item() == pytest.approx(1.0, abs=1e-5)


def test_embedding_backbone_becomes_classifier_with_new_head(embedding_teacher_dir):
    model = load_model(str(embedding_teacher_dir), kind="classifier", num_labels=3)
    assert model.kind == "classifier" and model.num_labels == 3
    assert model.predict(["the cat ."]).shape == (1, 3)


def test_classifier_label_count_mismatch(classifier_teacher_dir):
    with pytest.raises(ModelError, match="2 labels but the task has 3"):
        load_model(str(classifier_teacher_dir), kind="classifier", num_labels=3)


def test_missing_model_is_one_clear_line(tmp_path):
    with pytest.raises(ModelError) as caught:
        load_model(str(tmp_path / "nowhere" / "model"))
    assert "cannot load model" in str(caught.value) and "minilm" in str(caught.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
