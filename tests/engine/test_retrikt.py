"""RetriKT as a recipe: a knowledge stage fills a sample store, a student learns to retrieve from it,
and the exported student searches its store when it predicts."""

from __future__ import annotations

import pytest
import torch

import kdforge
from kdforge.engine.pipeline import evaluate_model
from kdforge.errors import IncompatibleError, ModelError, RecipeError
from kdforge.export import export
from kdforge.models import load_model
from kdforge.models.retrieval import RetrievalHead
from kdforge.recipe import validate_recipe
from kdforge.recipe.schema import DataSource
from kdforge.store.samples import open_samples
from tests.conftest import labelled

PQRNN = {"features": 64, "hidden": 16}


def retrikt_recipe(teacher, data, steps=40, methods=None) -> dict:
    return {
        "name": "tiny-retrikt",
        "task": {"name": "classification"},
        "data": {"train": [str(data / "sst.tsv")], "eval": str(data / "sst-dev.tsv")},
        "training": {"batch_size": 16, "lr": 3e-3, "max_steps": steps, "save_every": 20, "log_every": 5},
        "stages": [
            {"name": "knowledge", "kind": "knowledge", "teacher": str(teacher), "knowledge": {"copies": 2}},
            {
                "name": "student",
                "teacher": str(teacher),
                "student": {"pqrnn": PQRNN},
                "data": {"train": "stage:knowledge"},
                "methods": methods or [{"name": "retrikt", "k": 4, "tau": 0.1}],
            },
        ],
        "output": {"benchmark": False},
    }


def mixture_gap(teacher, student, texts) -> float:
    """KL(teacher || student) where the student's prediction is its mixture with what it retrieves."""
    t = torch.log_softmax(teacher.predict(texts), -1)
    s = torch.log_softmax(student.predict(texts), -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


@pytest.fixture(scope="module")
def trained(classifier_teacher_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrikt")
    results = kdforge.run(validate_recipe(retrikt_recipe(classifier_teacher_dir, data_dir)), out, show=False)
    return out, results


def test_knowledge_stage_writes_the_examples_and_their_copies(trained, classifier_teacher_dir):
    out, results = trained
    store = open_samples(out / "stages" / "knowledge" / "store")
    knowledge = results["stages"][0]
    assert knowledge["kind"] == "knowledge" and knowledge["samples"] == len(store)
    assert 160 < len(store) <= 160 * 3  # every example, plus up to 2 distinct copies each
    assert set(store.sources.tolist()) == set(range(160))  # each sample knows its example
    teacher = load_model(str(classifier_teacher_dir))
    assert torch.allclose(store.probs[:8], torch.softmax(teacher.predict(store.texts[:8]), -1), atol=1e-5)


def test_student_learns_to_retrieve_towards_its_teacher(trained, classifier_teacher_dir, data_dir, tmp_path):
    out, _ = trained
    teacher = load_model(str(classifier_teacher_dir))
    student = load_model(str(out / "student"))
    assert student.retrieval is not None and student.num_parameters() < teacher.num_parameters()
    texts = [t for t, _ in labelled(40, seed=6)]
    # the same student before training: fresh weights, the same store, keys of its own
    untrained = kdforge.run(
        validate_recipe(retrikt_recipe(classifier_teacher_dir, data_dir, steps=1) | {"output": {"benchmark": False}}),
        tmp_path,
        show=False,
    )
    before = load_model(untrained["exports"]["hf"])
    assert mixture_gap(teacher, student, texts) < 0.5 * mixture_gap(teacher, before, texts)


def test_exported_student_searches_its_store(trained, data_dir):
    out, results = trained
    student = load_model(str(out / "student"))
    alone = load_model(str(out / "student"))
    alone.retrieval = None
    texts = [t for t, _ in labelled(10, seed=8)]
    mixed, own = torch.softmax(student.predict(texts), -1), torch.softmax(alone.predict(texts), -1)
    lam = student.retrieval.mix
    retrieved = (mixed - lam * own) / (1 - lam)
    assert torch.allclose(retrieved.sum(-1), torch.ones(10), atol=1e-4) and (retrieved >= -1e-5).all()
    assert not torch.allclose(mixed, own, atol=1e-3)  # retrieval changes the prediction
    # kdforge eval scores the exported folder with its store, as the run did
    metrics = evaluate_model(
        str(out / "student"), "classification", DataSource(path=str(data_dir / "sst-dev.tsv")), "dev"
    )
    assert metrics["accuracy"] == pytest.approx(results["metrics"]["student"]["eval"]["accuracy"])
    assert isinstance(RetrievalHead.load(out / "student" / "retrieval"), RetrievalHead)
    with pytest.raises(ModelError, match="only the hf format carries"):
        export(student, out / "onnx", "onnx")


def test_retrikt_needs_a_sample_store(classifier_teacher_dir, data_dir, tmp_path):
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"][1]["data"] = {"train": [str(data_dir / "sst.tsv")]}
    with pytest.raises(IncompatibleError, match=r"stages\[1\]\.methods\[0\] \(retrikt\).*sample store"):
        kdforge.run(validate_recipe(recipe), tmp_path, show=False)


def test_knowledge_references_are_checked(classifier_teacher_dir, data_dir):
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"][1]["data"] = {"train": "stage:nowhere"}
    with pytest.raises(RecipeError, match="trains on 'stage:nowhere'.*knowledge stages: knowledge"):
        validate_recipe(recipe)
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"][1]["student"] = "stage:knowledge"
    with pytest.raises(RecipeError, match="writes a sample store"):
        validate_recipe(recipe)
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"][0]["methods"] = [{"name": "kd"}]
    with pytest.raises(RecipeError, match="takes no 'methods'"):
        validate_recipe(recipe)
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"][0]["knowledge"] = {"source": "generative"}
    with pytest.raises(RecipeError, match="label_words"):
        validate_recipe(recipe)


def test_store_info_describes_a_sample_store(trained):
    from typer.testing import CliRunner

    from kdforge.cli import app

    out, _ = trained
    result = CliRunner().invoke(app, ["store", "info", str(out / "student" / "retrieval" / "store")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "sample store (encoder source" in text and "keys and FAISS index of a trained student" in text


def test_unlabeled_in_domain_text_joins_the_store(classifier_teacher_dir, data_dir, tmp_path):
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir)
    recipe["stages"] = recipe["stages"][:1]
    recipe["stages"][0]["knowledge"] = {"copies": 1, "unlabeled": str(data_dir / "held_out.txt")}
    kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    store = open_samples(tmp_path / "stages" / "knowledge" / "store")
    extra = (data_dir / "held_out.txt").read_text().splitlines()
    assert store.texts[-len(extra) :] == extra
    tail = slice(len(store) - len(extra), len(store))
    assert (store.sources[tail] < 0).all()  # each unlabeled text is its own source
    named = [store.labels.index(name) for name in store.samples["label"][tail]]
    assert named == store.probs[tail].argmax(-1).tolist()  # it stands for the teacher's label


def test_agreement_of_pair_classifiers_reads_both_texts():
    from kdforge.engine.pipeline import agreement

    class PairModel:
        kind = "classifier"

        def __init__(self, by_pair: bool) -> None:
            self.by_pair = by_pair

        def predict(self, texts, pairs=None):
            key = pairs if self.by_pair else texts
            return torch.tensor([[1.0, 0.0] if "yes" in k else [0.0, 1.0] for k in key])

    texts, pairs = ["a yes", "b yes", "c no"], ["yes", "no", "no"]
    # a teacher that reads the second text and a student that reads the first agree on 2 of 3 pairs
    assert agreement(PairModel(True), PairModel(False), texts, pairs)["prediction_agreement"] == pytest.approx(200 / 3)
    assert agreement(PairModel(True), PairModel(True), texts, pairs)["prediction_agreement"] == 100


def test_a_student_can_retrieve_by_its_classifier_features(classifier_teacher_dir, data_dir, tmp_path):
    methods = [{"name": "retrikt", "k": 4, "tau": 0.1, "key": "features"}]
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir, steps=10, methods=methods)
    kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    head = student.retrieval
    assert head.key == "features" and head.keys.shape[1] == student.hf.classifier.in_features
    texts = [t for t, _ in labelled(6, seed=9)]
    # the exported student's prediction: its own distribution mixed with the neighbours of its features
    features, logits = student.rows("features", texts), student.rows("logits", texts)
    keys = head.keys[head.neighbours(features)]
    weights = torch.softmax(torch.einsum("bd,bkd->bk", torch.nn.functional.normalize(features, dim=-1), keys) / 0.1, -1)
    retrieved = torch.einsum("bk,bkc->bc", weights, head.probs[head.neighbours(features)])
    expected = head.mix * torch.softmax(logits, -1) + (1 - head.mix) * retrieved
    assert torch.allclose(student.predict(texts).exp(), expected.detach(), atol=1e-5)


def test_stored_kd_trains_the_student_live_kd_trains(classifier_teacher_dir, data_dir, tmp_path):
    """KD from the store's distributions is live KD without the teacher pass: the same student comes out."""
    finetune = {  # a teacher whose distributions depend on its input: the keyword rule, learnt
        "name": "teacher",
        "task": {"name": "classification"},
        "data": {"train": [str(data_dir / "sst.tsv")], "eval": str(data_dir / "sst-dev.tsv")},
        "training": {"batch_size": 16, "lr": 2e-3, "max_steps": 100},
        "stages": [{"name": "teacher", "kind": "finetune", "student": str(classifier_teacher_dir)}],
        "output": {"benchmark": False},
    }
    teacher_dir = kdforge.run(validate_recipe(finetune), tmp_path / "teacher")["exports"]["hf"]
    students = {}
    for name in ("kd", "stored_kd"):
        methods = [{"name": name, "temperature": 2.0}]
        kdforge.run(validate_recipe(retrikt_recipe(teacher_dir, data_dir, 150, methods)), tmp_path / name)
        students[name] = load_model(str(tmp_path / name / "stages" / "student" / "model"))
    texts = [t for t, _ in labelled(20, seed=9)]
    live, stored = (torch.softmax(students[n].predict(texts), -1) for n in ("kd", "stored_kd"))
    assert torch.allclose(live, stored, atol=1e-3)  # the same student ...
    fresh = kdforge.run(
        validate_recipe(retrikt_recipe(teacher_dir, data_dir, steps=1, methods=[{"name": "stored_kd"}])),
        tmp_path / "fresh",
    )
    teacher, untrained = load_model(str(teacher_dir)), load_model(fresh["exports"]["hf"])
    # ... and one that moved towards its teacher
    gaps = [mixture_gap(teacher, s, texts) for s in (students["stored_kd"], untrained)]
    assert gaps[0] < 0.1 * gaps[1]


def test_retrikt_weighted_next_to_stored_kd_in_one_stage(classifier_teacher_dir, data_dir, tmp_path):
    """The MRPC recipe's stage: the mixture loss at a quarter weight, plain KD from the store on the own head."""
    methods = [
        {"name": "retrikt", "weight": 0.25, "k": 4, "tau": 0.1, "key": "features"},
        {"name": "stored_kd", "temperature": 2.0},
    ]
    results = {}
    for steps in (1, 60):
        recipe = retrikt_recipe(classifier_teacher_dir, data_dir, steps=steps, methods=methods)
        results[steps] = kdforge.run(validate_recipe(recipe), tmp_path / str(steps), show=False)
    teacher = load_model(str(classifier_teacher_dir))
    trained, untrained = (load_model(results[n]["exports"]["hf"]) for n in (60, 1))
    assert trained.retrieval is not None and trained.retrieval.key == "features"  # it ships with its store
    learnt, initial = (float(m.retrieval.mix.detach()) for m in (trained, untrained))
    assert learnt != pytest.approx(initial, abs=1e-4)  # lambda learnt
    texts = [t for t, _ in labelled(20, seed=9)]
    assert mixture_gap(teacher, trained, texts) < 0.5 * mixture_gap(teacher, untrained, texts)


def test_a_pair_student_retrieves_by_word_overlap_and_fits_lambda_on_held_out_examples(
    classifier_teacher_dir, data_dir, tmp_path
):
    from kdforge.models.overlap import overlap_shares
    from kdforge.models.retrieval import overlap_key

    methods = [{"name": "retrikt", "k": 4, "tau": 0.1, "key": "overlap", "held_out": 0.25}]
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir, steps=10, methods=methods)
    recipe["task"]["labels"] = ["entailment", "not_entailment"]
    recipe["data"] = {"train": [str(data_dir / "nli.jsonl")], "eval": str(data_dir / "nli.jsonl")}
    kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    head = student.retrieval
    # 40 pairs, each with 2 copies: a quarter of the pairs (10), every sample of each, never trained on
    assert head.key == "overlap" and head.tuned["held_out_rows"] == 30
    assert head.mix.item() == pytest.approx(min(max(head.tuned["mix"], 1e-4), 1 - 1e-4), abs=1e-5)
    store = head.store
    texts, pairs = store.texts[:6], store.pairs[:6]
    inputs = student.tokenize(texts, pairs)
    shares = overlap_shares(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    assert torch.allclose(student.rows("overlap", texts, pairs), shares)
    # the keys are the coded shares of the store's pairs, and the prediction mixes in their neighbours
    assert torch.allclose(head.keys[:6], overlap_key(shares), atol=1e-6)
    ids = head.neighbours(overlap_key(shares))
    weights = torch.softmax(torch.einsum("bd,bkd->bk", overlap_key(shares), head.keys[ids]) / 0.1, -1)
    retrieved = torch.einsum("bk,bkc->bc", weights, head.probs[ids])
    expected = head.mix * torch.softmax(student.rows("logits", texts, pairs), -1) + (1 - head.mix) * retrieved
    assert torch.allclose(student.predict(texts, pairs).exp(), expected.detach(), atol=1e-5)


def test_an_overlap_key_needs_segment_ids(classifier_teacher_dir):
    student = load_model(str(classifier_teacher_dir))
    assert "overlap" in student.views
    student.tokenizer.model_input_names = ["input_ids", "attention_mask"]  # as RoBERTa's: no token_type_ids
    with pytest.raises(IncompatibleError, match="cannot give the overlap view"):
        student.rows("overlap", ["a b"], ["b c"])


def test_held_out_examples_stay_out_of_every_method_of_the_stage(classifier_teacher_dir, data_dir, tmp_path):
    methods = [{"name": "retrikt", "held_out": 0.2}, {"name": "stored_kd"}]
    recipe = retrikt_recipe(classifier_teacher_dir, data_dir, steps=2, methods=methods)
    with pytest.raises(IncompatibleError, match="held_out keeps examples out of its own loss only"):
        kdforge.run(validate_recipe(recipe), tmp_path, show=False)
