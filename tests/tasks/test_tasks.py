"""The sts and classification tasks (datasets, label mapping, evaluation) and the metric functions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from kdforge.errors import DataError, RecipeError
from kdforge.evaluate.metrics import (
    classification_metrics,
    cosine_scores,
    pearson,
    similarity_fidelity,
    spearman,
)
from kdforge.recipe.schema import DataSource, TaskSpec
from kdforge.tasks import TASKS
from kdforge.tasks.classification import Classification
from kdforge.tasks.data import load_source
from kdforge.tasks.sts import STS


def task(name: str, **spec):
    return TASKS.get(name)(TaskSpec(name=name, **spec))


def src(path: Path, **fields) -> DataSource:
    return DataSource.model_validate({"path": str(path), **fields})


def tsv(path: Path, header: str, rows: list[tuple]) -> Path:
    path.write_text(header + "\n" + "".join("\t".join(str(v) for v in row) + "\n" for row in rows))
    return path


# --------------------------------------------------------------------------- registry


def test_registry_has_every_task():
    assert TASKS.names() == [
        "classification",
        "intent_slots",
        "lm",
        "mlm",
        "ranking",
        "reranking",
        "sts",
        "token_classification",
    ]
    assert isinstance(task("sts"), STS) and isinstance(task("classification"), Classification)
    assert task("sts").kind == "embedding" and task("classification").kind == "classifier"
    assert task("sts").primary_metric == "spearman"
    assert task("classification").primary_metric == "accuracy"
    assert task("classification", metric="f1").primary_metric == "f1"
    with pytest.raises(RecipeError, match="valid: classification, intent_slots, lm, mlm, ranking, reranking, sts"):
        TASKS.get("regression")


# --------------------------------------------------------------------------- sts


def test_sts_train_dataset_dedups_and_flattens_pairs(tmp_path):
    pairs = tmp_path / "sts-train.csv"
    pairs.write_text(
        "g\tf\t2012\t1\t5.0\tA cat sits.\tA dog runs.\n"
        "g\tf\t2012\t2\t1.0\tA dog runs.\tBirds fly.\n"
        "g\tf\t2012\t3\t2.0\tA cat sits.\tA cat sits.\n"
    )
    more = tmp_path / "more.txt"
    more.write_text("Birds fly.\nFish swim.\n   \nA cat sits.\n")
    ds = task("sts").train_dataset([src(pairs), src(more)])
    assert ds.column_names == ["text", "index"]
    assert sorted(ds["text"]) == sorted(["A cat sits.", "A dog runs.", "Birds fly.", "Fish swim."])
    assert len(set(ds["text"])) == len(ds)
    assert list(ds["index"]) == list(range(len(ds)))
    # first-seen order: both sides of the first pair, then new sentences as they come
    assert list(ds["text"]) == ["A cat sits.", "A dog runs.", "Birds fly.", "Fish swim."]


def test_sts_train_dataset_ignores_labels(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("one", 0), ("two", 1), ("one", 1)])
    ds = task("sts").train_dataset([src(path)])
    assert list(ds["text"]) == ["one", "two"]
    assert list(ds["index"]) == [0, 1]


def test_sts_train_dataset_on_synthetic_files(data_dir):
    ds = task("sts").train_dataset([src(data_dir / "train.txt"), src(data_dir / "held_out.txt")])
    expected = dict.fromkeys(
        line for f in ("train.txt", "held_out.txt") for line in (data_dir / f).read_text().splitlines() if line
    )
    assert list(ds["text"]) == list(expected)
    assert list(ds["index"]) == list(range(len(expected)))


def test_sts_is_labelled(tmp_path, data_dir):
    sts = task("sts")
    assert sts.is_labelled(load_source(src(data_dir / "sts-dev.csv")))
    assert not sts.is_labelled(load_source(src(data_dir / "train.txt")))
    assert not sts.is_labelled(load_source(src(data_dir / "sst.tsv")))
    partly = tsv(tmp_path / "p.tsv", "sentence1\tsentence2\tscore", [("a", "b", "1.0"), ("c", "d", "")])
    assert not sts.is_labelled(load_source(src(partly)))


def test_sts_evaluate_matches_hand_computation(embedding_teacher_dir, data_dir):
    from kdforge.models import load_model

    model = load_model(str(embedding_teacher_dir))
    ds = load_source(src(data_dir / "sts-dev.csv"))
    metrics = task("sts").evaluate(model, ds, "sts-dev")
    a = model.encode(list(ds["text"]))
    b = model.encode(list(ds["text_pair"]))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy()
    gold = np.array(ds["score"])
    assert metrics["spearman"] == pytest.approx(spearmanr(cos, gold).correlation * 100, abs=1e-4)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(cos, gold)[0, 1] * 100, abs=1e-3)
    assert -100 <= metrics["spearman"] <= 100


def test_sts_evaluate_needs_pairs_with_scores(embedding_teacher_dir, data_dir):
    from kdforge.models import load_model

    model = load_model(str(embedding_teacher_dir))
    with pytest.raises(DataError, match="held_out"):
        task("sts").evaluate(model, load_source(src(data_dir / "held_out.txt")), "held_out")


# --------------------------------------------------------------------------- classification labels


def test_integer_labels_map_in_numeric_order(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", 10), ("b", 2), ("c", 0), ("d", 2)])
    clf = task("classification")
    ds = clf.train_dataset([src(path)])
    assert clf.label_names == [str(i) for i in range(11)]  # numeric, not "0", "10", "2"
    assert clf.num_labels == 11
    assert list(ds["label"]) == [10, 2, 0, 2]
    assert list(ds["text"]) == ["a", "b", "c", "d"]
    assert list(ds["index"]) == [0, 1, 2, 3]


def test_string_labels_map_alphabetically(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", "neutral"), ("b", "contradiction"), ("c", "entailment")])
    clf = task("classification")
    ds = clf.train_dataset([src(path)])
    assert clf.label_names == ["contradiction", "entailment", "neutral"]
    assert clf.num_labels == 3
    assert list(ds["label"]) == [2, 0, 1]


def test_task_labels_order_wins(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", "neg"), ("b", "pos"), ("c", "neg")])
    clf = task("classification", labels=["pos", "neg"])
    assert clf.num_labels == 2
    ds = clf.train_dataset([src(path)])
    assert clf.label_names == ["pos", "neg"]
    assert list(ds["label"]) == [1, 0, 1]


def test_task_labels_win_over_numeric_order(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", 0), ("b", 1)])
    clf = task("classification", labels=["1", "0"])
    assert list(clf.train_dataset([src(path)])["label"]) == [1, 0]


def test_training_label_not_in_task_labels(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", "neg"), ("b", "maybe")])
    clf = task("classification", labels=["pos", "neg"])
    with pytest.raises(DataError, match="'maybe'"):
        clf.train_dataset([src(path)])


def test_pairs_from_jsonl_with_string_labels(data_dir):
    clf = task("classification")
    ds = clf.train_dataset([src(data_dir / "nli.jsonl")])
    assert set(ds.column_names) == {"text", "text_pair", "label", "index"}
    assert clf.label_names == ["entailment", "not_entailment"]
    raw = [json.loads(line)["label"] for line in (data_dir / "nli.jsonl").read_text().splitlines()]
    assert list(ds["label"]) == [clf.label_names.index(r) for r in raw]


def test_eval_label_not_in_training_labels(tmp_path, classifier_teacher_dir):
    from kdforge.models import load_model

    train = tsv(tmp_path / "train.tsv", "sentence\tlabel", [("a", "pos"), ("b", "neg")])
    dev = tsv(tmp_path / "dev.tsv", "sentence\tlabel", [("c", "pos"), ("d", "mixed")])
    clf = task("classification")
    clf.train_dataset([src(train)])
    with pytest.raises(DataError) as info:
        clf.label_ids(list(load_source(src(dev))["label"]), "dev.tsv")
    assert "'mixed'" in str(info.value) and "dev.tsv" in str(info.value)
    assert "neg, pos" in str(info.value)
    model = load_model(str(classifier_teacher_dir))
    with pytest.raises(DataError, match="'mixed'"):
        clf.evaluate(model, load_source(src(dev)), "dev.tsv")


def test_num_labels_mismatch_string_labels(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", "pos"), ("b", "neg")])
    with pytest.raises(DataError) as info:
        task("classification", num_labels=3).train_dataset([src(path)])
    assert "num_labels is 3" in str(info.value)
    assert "neg, pos" in str(info.value)


def test_num_labels_smaller_than_integer_labels(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", 0), ("b", 4)])
    with pytest.raises(DataError, match="num_labels is 2"):
        task("classification", num_labels=2).train_dataset([src(path)])


def test_num_labels_larger_than_seen_integer_labels(tmp_path):
    """Integer labels: classes absent from the training data are allowed up to num_labels."""
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", 0), ("b", 1)])
    clf = task("classification", num_labels=3)
    clf.train_dataset([src(path)])
    assert clf.label_names == ["0", "1", "2"]
    assert clf.num_labels == 3


def test_num_labels_without_data():
    assert task("classification", num_labels=5).num_labels == 5
    assert task("classification").num_labels is None
    assert task("sts").num_labels is None


def test_training_data_needs_labels(data_dir):
    with pytest.raises(DataError, match="label column"):
        task("classification").train_dataset([src(data_dir / "train.txt")])


def test_mixing_single_and_pair_sources(data_dir):
    with pytest.raises(DataError, match="mix"):
        task("classification", labels=["0", "1", "entailment", "not_entailment"]).train_dataset(
            [src(data_dir / "sst.tsv"), src(data_dir / "nli.jsonl")]
        )


def test_rows_without_label_are_dropped(tmp_path):
    path = tsv(tmp_path / "x.tsv", "sentence\tlabel", [("a", 1), ("b", ""), ("c", 0)])
    ds = task("classification").train_dataset([src(path)])
    assert list(ds["text"]) == ["a", "c"]
    assert list(ds["label"]) == [1, 0]
    assert list(ds["index"]) == [0, 1]


def test_classification_is_labelled(tmp_path, data_dir):
    clf = task("classification")
    assert clf.is_labelled(load_source(src(data_dir / "sst-dev.tsv")))
    assert not clf.is_labelled(load_source(src(data_dir / "train.txt")))
    partly = tsv(tmp_path / "p.tsv", "sentence\tlabel", [("a", 1), ("b", "")])
    assert not clf.is_labelled(load_source(src(partly)))


def test_configure_writes_id2label(classifier_teacher_dir, data_dir):
    from kdforge.models import load_model

    clf = task("classification", labels=["neg", "pos"])
    model = load_model(str(classifier_teacher_dir))
    clf.configure(model)
    assert model.hf.config.id2label == {0: "neg", 1: "pos"}
    assert model.hf.config.label2id == {"neg": 0, "pos": 1}


# --------------------------------------------------------------------------- classification evaluate


def test_classification_evaluate_matches_hand_computation(classifier_teacher_dir, data_dir):
    from kdforge.models import load_model

    model = load_model(str(classifier_teacher_dir))
    assert model.kind == "classifier"
    clf = task("classification")
    clf.train_dataset([src(data_dir / "sst.tsv")])
    ds = load_source(src(data_dir / "sst-dev.tsv"))
    metrics = clf.evaluate(model, ds, "sst-dev")

    gold = [int(v) for v in ds["label"]]
    predicted = model.predict(list(ds["text"])).argmax(dim=-1).tolist()
    accuracy = 100 * sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    tp = sum(p == 1 and g == 1 for p, g in zip(predicted, gold, strict=True))
    fp = sum(p == 1 and g == 0 for p, g in zip(predicted, gold, strict=True))
    fn = sum(p == 0 and g == 1 for p, g in zip(predicted, gold, strict=True))
    f1 = 100 * 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    assert set(metrics) == {"accuracy", "f1", "mcc"}
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["f1"] == pytest.approx(f1)
    assert -100 <= metrics["mcc"] <= 100


def test_classification_evaluate_pairs(classifier_teacher_dir, data_dir):
    from kdforge.models import load_model

    model = load_model(str(classifier_teacher_dir))
    clf = task("classification")
    clf.train_dataset([src(data_dir / "nli.jsonl")])
    ds = load_source(src(data_dir / "nli.jsonl"))
    metrics = clf.evaluate(model, ds, "nli")
    gold = [clf.label_names.index(v) for v in ds["label"]]
    predicted = model.predict(list(ds["text"]), list(ds["text_pair"])).argmax(dim=-1).tolist()
    assert metrics["accuracy"] == pytest.approx(100 * np.mean(np.array(predicted) == np.array(gold)))


def test_evaluate_existing_classifier_with_default_label_names(classifier_teacher_dir, data_dir):
    """`kdforge eval` on a Hugging Face classifier whose config keeps the default names
    (LABEL_0, LABEL_1): data labelled 0/1 must be scored, not rejected."""
    from kdforge.models import load_model

    model = load_model(str(classifier_teacher_dir))
    assert model.hf.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    ds = load_source(src(data_dir / "sst-dev.tsv"))
    metrics = task("classification").evaluate(model, ds, "sst-dev")
    gold = [int(v) for v in ds["label"]]
    predicted = model.predict(list(ds["text"])).argmax(dim=-1).tolist()
    assert metrics["accuracy"] == pytest.approx(100 * np.mean(np.array(predicted) == np.array(gold)))


def test_evaluate_existing_classifier_adopts_named_labels(classifier_teacher_dir, tmp_path):
    from kdforge.models import load_model

    model = load_model(str(classifier_teacher_dir))
    model.hf.config.id2label = {0: "neg", 1: "pos"}
    dev = tsv(tmp_path / "dev.tsv", "sentence\tlabel", [("the cat likes the ball .", "pos"), ("a dog .", "neg")])
    clf = task("classification")
    metrics = clf.evaluate(model, load_source(src(dev)), "dev")
    assert clf.label_names == ["neg", "pos"]
    predicted = model.predict(["the cat likes the ball .", "a dog ."]).argmax(dim=-1).tolist()
    assert metrics["accuracy"] == pytest.approx(100 * np.mean(np.array(predicted) == np.array([1, 0])))


def test_classification_evaluate_needs_labels(classifier_teacher_dir, data_dir):
    from kdforge.models import load_model

    model = load_model(str(classifier_teacher_dir))
    with pytest.raises(DataError, match="label"):
        task("classification").evaluate(model, load_source(src(data_dir / "train.txt")), "train.txt")


# --------------------------------------------------------------------------- metrics


def test_spearman_and_pearson():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(100)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-100)
    # monotone but not linear: rank correlation is perfect, linear is not
    assert spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(100)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 1000]) < 100
    # ranks [1,2,3,4] vs [2,1,4,3]: d^2 = 4, rho = 1 - 6*4/(4*15) = 0.6
    assert spearman([0.1, 0.2, 0.3, 0.4], [2, 1, 4, 3]) == pytest.approx(60)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1] * 100)
    assert isinstance(spearman(np.array([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0]).numpy()), float)


def test_cosine_scores():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    assert cosine_scores(a, b) == pytest.approx([1.0, -1.0, 0.0], abs=1e-6)


def test_classification_metrics_binary():
    gold = [1, 1, 1, 0, 0, 0, 1, 0]
    pred = [1, 1, 0, 0, 0, 1, 1, 1]
    # tp=3 fn=1 fp=2 tn=2
    tp, fn, fp, tn = 3, 1, 2, 2
    accuracy = (tp + tn) / 8
    f1 = 2 * tp / (2 * tp + fp + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics = classification_metrics(pred, gold, 2)
    assert metrics["accuracy"] == pytest.approx(accuracy * 100)
    assert metrics["f1"] == pytest.approx(f1 * 100)
    assert metrics["mcc"] == pytest.approx(mcc * 100)
    assert all(isinstance(v, float) for v in metrics.values())


def test_classification_metrics_perfect_and_inverted():
    assert classification_metrics([0, 1, 1, 0], [0, 1, 1, 0], 2) == pytest.approx(
        {"accuracy": 100.0, "f1": 100.0, "mcc": 100.0}
    )
    inverted = classification_metrics([1, 0, 0, 1], [0, 1, 1, 0], 2)
    assert inverted["accuracy"] == 0.0 and inverted["f1"] == 0.0
    assert inverted["mcc"] == pytest.approx(-100.0)


def test_classification_metrics_constant_prediction():
    metrics = classification_metrics([0, 0, 0, 0], [0, 1, 0, 1], 2)
    assert metrics["accuracy"] == pytest.approx(50.0)
    assert metrics["f1"] == 0.0  # no positive predicted: zero_division -> 0
    assert metrics["mcc"] == 0.0


def test_classification_metrics_three_classes_macro_f1():
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    macro = (0.5 + 0.8 + 2 / 3) / 3
    metrics = classification_metrics(pred, gold, 3)
    assert metrics["accuracy"] == pytest.approx(400 / 6)
    assert metrics["f1"] == pytest.approx(macro * 100)
    # multiclass MCC (Gorodkin): c=4 correct, s=6, t=(2,2,2), p=(2,3,1)
    c, s, t, p = 4, 6, np.array([2, 2, 2]), np.array([2, 3, 1])
    mcc = (c * s - t @ p) / math.sqrt((s * s - p @ p) * (s * s - t @ t))
    assert metrics["mcc"] == pytest.approx(mcc * 100)


def test_similarity_fidelity():
    torch.manual_seed(0)
    teacher = torch.randn(24, 16)
    assert similarity_fidelity(teacher, teacher.clone()) == pytest.approx(100)
    # scale does not matter: cosine geometry is the same
    assert similarity_fidelity(teacher, teacher * 3.0) == pytest.approx(100)
    slightly = similarity_fidelity(teacher, teacher + 0.1 * torch.randn(24, 16))
    very = similarity_fidelity(teacher, teacher + 3.0 * torch.randn(24, 16))
    unrelated = similarity_fidelity(teacher, torch.randn(24, 16))
    assert 80 < slightly < 100
    assert very < slightly
    assert abs(unrelated) < 30


def test_similarity_fidelity_works_across_widths():
    """Teacher and student may have different embedding sizes: only pairwise cosines compare."""
    torch.manual_seed(1)
    teacher = torch.randn(12, 32)
    projection = torch.linalg.qr(torch.randn(32, 32))[0]  # orthogonal: cosines are unchanged
    student = (teacher @ projection)[:, :32]
    assert similarity_fidelity(teacher, student) == pytest.approx(100)
    assert isinstance(similarity_fidelity(teacher, torch.randn(12, 8)), float)


def test_classification_metrics_accepts_tensors_and_lists():
    a = classification_metrics(torch.tensor([0, 1, 1]).tolist(), [0, 1, 0], 2)
    b = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    assert a == b


def test_train_dataset_is_a_datasets_dataset(data_dir):
    assert isinstance(task("sts").train_dataset([src(data_dir / "train.txt")]), datasets.Dataset)
