"""The static-embedding student: Model2Vec initialisation, weighting, training, exports, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kdforge
from kdforge.errors import IncompatibleError, ModelError
from kdforge.evaluate.metrics import similarity_fidelity
from kdforge.export import export
from kdforge.models import build_student, load_model
from kdforge.models.static import sif_weights, teacher_token_embeddings, teacher_token_table
from kdforge.models.vocabulary import token_counts
from kdforge.recipe import validate_recipe
from kdforge.recipe.schema import StudentSpec
from tests.conftest import sentences, sts_recipe

TEXTS = sentences(64, seed=11)


@pytest.fixture(scope="module")
def teacher(embedding_teacher_dir):
    return load_model(str(embedding_teacher_dir))


def static_spec(**static) -> StudentSpec:
    return StudentSpec.model_validate({"static": static})


@pytest.mark.parametrize("dims", [32, 8])
def test_pca_inversion_gives_back_the_teacher_token_embeddings(teacher, dims):
    """``vectors / weights @ components + mean`` is the teacher's token table: exactly at full width,
    and with the discarded share of the variance as its squared error when narrower."""
    ids = list(range(len(teacher.tokenizer)))
    embeddings = teacher_token_embeddings(teacher, ids)
    table = teacher_token_table(teacher, ids, dims, sif=1e-3, counts=token_counts(teacher.tokenizer, TEXTS))
    assert table.vectors.shape == (len(ids), dims)
    rebuilt = table.vectors / table.weights[:, None] @ table.components + table.mean
    error = (rebuilt - embeddings).pow(2).sum()
    variance = (embeddings - embeddings.mean(0)).pow(2).sum()
    if dims == teacher.hidden_size:
        assert torch.allclose(rebuilt, embeddings, atol=1e-5)
    else:
        assert 0 < table.explained < 1
        assert float(error / variance) == pytest.approx(1 - table.explained, abs=1e-4)
    assert torch.allclose(table.components @ table.components.T, torch.eye(dims), atol=1e-5)


def test_sif_weights_follow_token_frequencies():
    counts = torch.tensor([0, 1, 10, 89])
    weights = sif_weights(4, 0.01, counts)
    assert torch.allclose(weights, 0.01 / (0.01 + counts / 100))
    assert weights[0] == 1 and torch.all(weights[1:] < weights[:-1])  # unseen tokens weigh most
    zipf = sif_weights(4, 0.01)  # no text: Zipf's law over ids, p ~ 1 / (id + 2)
    p = 1 / torch.arange(2.0, 6.0)
    assert torch.allclose(zipf, 0.01 / (0.01 + p / p.sum()))
    assert torch.equal(sif_weights(4, 0.0, counts), torch.ones(4))


def test_student_averages_its_token_vectors_without_special_tokens(teacher):
    student, report = build_student(teacher, static_spec(dims=16), TEXTS)
    assert student.num_parameters() == len(teacher.tokenizer) * 16
    assert "PCA keeps" in report.describe() and "64 training texts" in report.describe()
    text = TEXTS[0]
    ids = teacher.tokenizer(text, add_special_tokens=False)["input_ids"]
    table = student.hf.get_input_embeddings().weight.detach()
    expected = F.normalize(table[ids].mean(0), dim=-1)
    assert torch.allclose(student.encode([text])[0], expected, atol=1e-6)


@pytest.mark.parametrize("fmt", ["sentence-transformers", "static-table", "hf"])
def test_each_export_reloads_with_the_same_embeddings(teacher, tmp_path, fmt):
    student, _ = build_student(teacher, static_spec(dims=16), TEXTS)
    expected = student.encode(TEXTS)
    folder = export(student, tmp_path / fmt, fmt)
    assert torch.allclose(load_model(str(folder)).encode(TEXTS), expected, atol=1e-6)
    if fmt == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(folder), device="cpu")
        assert [type(m).__name__ for m in st] == ["StaticEmbedding", "Normalize"]
        assert torch.allclose(torch.from_numpy(st.encode(TEXTS)), expected, atol=1e-6)
    if fmt == "static-table":
        from safetensors.torch import load_file

        table = load_file(folder / "model.safetensors")
        assert list(table) == ["embeddings"] and table["embeddings"].shape == (len(teacher.tokenizer), 16)
        model2vec = pytest.importorskip("model2vec")
        static = model2vec.StaticModel.from_pretrained(str(folder))
        assert torch.allclose(torch.from_numpy(static.encode(TEXTS)), expected, atol=1e-6)


def test_short_distillation_brings_the_student_closer(embedding_teacher_dir, data_dir, tmp_path):
    raw = sts_recipe(embedding_teacher_dir, data_dir, max_steps=40, lr=0.05, weight_decay=0.0)
    raw["student"] = {"static": {"dims": 16}}
    raw["methods"] = [{"name": "cosine", "on": "embedding"}]  # as recipes/sts-static.yaml
    recipe = validate_recipe(raw)
    teacher = load_model(str(embedding_teacher_dir))
    texts = sentences(48, seed=1)
    before, _ = build_student(teacher, recipe.stages[0].student, (data_dir / "train.txt").read_text().splitlines())
    result = kdforge.run(recipe, tmp_path / "run", show=False)
    after = load_model(result["exports"]["sentence-transformers"])
    t = teacher.encode(texts)
    assert similarity_fidelity(t, after.encode(texts)) > similarity_fidelity(t, before.encode(texts))


def test_compressed_vocabulary_keeps_the_frequent_rows(embedding_teacher_dir, teacher, data_dir, tmp_path):
    """``student.vocabulary`` drops rare tokens from the table and the tokenizer; training and export follow."""
    spec = StudentSpec.model_validate({"static": {"dims": 16}, "vocabulary": 0.5})
    student, report = build_student(teacher, spec, TEXTS)
    size = len(teacher.tokenizer)
    assert report.vocabulary == (size // 2, size) and student.num_parameters() == size // 2 * 16
    kept = [w for w in student.tokenizer.get_vocab() if w not in student.tokenizer.all_special_tokens]
    assert student.tokenizer.tokenize(" ".join(kept)) == teacher.tokenizer.tokenize(" ".join(kept))
    raw = sts_recipe(embedding_teacher_dir, data_dir, max_steps=4, lr=0.05, weight_decay=0.0)
    raw["student"] = {"static": {"dims": 16}, "vocabulary": 0.5}
    raw["methods"] = [{"name": "cosine", "on": "embedding"}]
    result = kdforge.run(validate_recipe(raw), tmp_path / "run", show=False)
    trained = load_model(result["exports"]["sentence-transformers"])
    assert trained.num_parameters() == size // 2 * 16 and not trained.special_tokens


def test_bad_specs_are_refused_clearly(teacher, classifier_teacher_dir):
    with pytest.raises(ModelError, match="dims is 64.*teacher's embeddings have 32"):
        build_student(teacher, static_spec(dims=64), TEXTS)
    wide, _ = build_student(teacher, static_spec(dims=64, init="random"), TEXTS)  # random vectors: any width
    assert wide.hidden_size == 64
    with pytest.raises(ModelError, match="sentence embeddings"):
        build_student(load_model(str(classifier_teacher_dir)), static_spec(), TEXTS)
    with pytest.raises(ValueError, match="num_layers apply to transformer students"):
        StudentSpec.model_validate({"static": {}, "num_layers": 2})
    with pytest.raises(ValueError, match="greater than 0"):
        static_spec(dims=0)


def test_methods_that_read_layers_are_refused(embedding_teacher_dir, data_dir, tmp_path):
    raw = sts_recipe(embedding_teacher_dir, data_dir, max_steps=2)
    raw["student"] = {"static": {"dims": 16}}
    raw["methods"] = [{"name": "hidden_mse"}]
    recipe = validate_recipe(raw)
    with pytest.raises(
        IncompatibleError,
        match=r"methods\[0\] \(hidden_mse\): reads the hidden_states view\(s\), "
        r"which the student cannot give \(it gives: embedding\)",
    ):
        kdforge.run(recipe, tmp_path / "run", show=False)
