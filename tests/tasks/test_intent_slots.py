"""The intent_slots task: joint intent + slot models, their data, metrics, training, distillation and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from seqeval.metrics import f1_score

import kdforge
from kdforge.engine.collate import Collator
from kdforge.errors import DataError, IncompatibleError, ModelError
from kdforge.evaluate.metrics import joint_metrics
from kdforge.export import export, save_hf
from kdforge.methods import METHODS
from kdforge.methods.base import TOKEN_LABELS, ModelShape, Pair
from kdforge.models import build_student, load_model
from kdforge.models.joint import JointIntentSlotModel
from kdforge.models.pqrnn import parameter_count
from kdforge.models.text_model import TextModel
from kdforge.recipe import StudentSpec, load_recipe, validate_recipe
from kdforge.recipe.schema import DataSource, PQRNNSpec, TaskSpec
from kdforge.tasks import TASKS
from kdforge.tasks.intent_slots import IntentSlots
from kdforge.tasks.token_classification import IGNORE, encode_words
from tests.conftest import SHARED_DATA, bert_config, vocabulary
from tests.tasks.test_token_classification import TAGS, tagged, wordpiece, write_split

ROOT = Path(__file__).resolve().parents[2]
INTENTS = ["act", "describe"]  # alphabetical: the order the task learns them in
TINY_PQRNN = {"features": 64, "hidden": 16, "layers": 2, "kernel": 2}


def task(**spec) -> IntentSlots:
    return TASKS.get("intent_slots")(TaskSpec(name="intent_slots", **spec))


def src(path: Path, **fields) -> DataSource:
    return DataSource.model_validate({"path": str(path), **fields})


@pytest.fixture(scope="module")
def nlu_dir(tmp_path_factory) -> Path:
    """An ATIS-style folder: train / valid / test, each with seq.in, seq.out and label."""
    folder = tmp_path_factory.mktemp("nlu")
    for split, n, seed in (("train", 160, 0), ("valid", 40, 1), ("test", 24, 2)):
        write_split(folder / split, tagged(n, seed))
    return folder


def joint_bert(seed: int, layers: int = 4, **config) -> TextModel:
    """A BERT with joint heads over INTENTS and TAGS (random weights) and a fast tokenizer."""
    from transformers import BertModel

    torch.manual_seed(seed)
    hf = JointIntentSlotModel.from_backbone(BertModel(bert_config(layers=layers, **config)), len(INTENTS), len(TAGS))
    model = TextModel(hf.eval(), wordpiece(vocabulary()), "joint")
    task(labels=INTENTS, slot_labels=TAGS).configure(model)
    return model


@pytest.fixture(scope="module")
def joint_teacher_dir(tmp_path_factory) -> Path:
    """A 4-layer joint BERT with peaked outputs, saved as kdforge exports it."""
    return save_hf(joint_bert(6, initializer_range=0.2), tmp_path_factory.mktemp("joint") / "teacher")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder without heads (what a finetune stage starts from).

    At the default init (0.02) a random tiny BERT's first-token states hardly differ between
    sentences, and the slot loss, which trains every token, drowns the intent's signal; a wider
    init gives the intent head something to read, as a pre-trained encoder does.
    """
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(5)
    BertModel(bert_config(layers=2, initializer_range=0.1)).save_pretrained(folder)
    wordpiece(vocabulary()).save_pretrained(folder)
    return folder


def recipe(train: Path, **stage) -> dict:
    return {
        "name": "tiny-joint",
        "task": {"name": "intent_slots"},
        "data": {"train": [str(train)], "eval": {"path": str(train), "split": "dev"}},
        "training": {"batch_size": 16, "lr": 3e-3, "max_steps": 60, "log_every": 10, "save_every": 1000},
        "output": {"benchmark": False},
        **stage,
    }


def outputs(model: TextModel, words: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intent logits, slot logits and where each word starts, for sentences given as words."""
    inputs, starts = encode_words(model.tokenizer, words, 32)
    with torch.no_grad():
        views = model.eval()(inputs, frozenset({"logits", "token_logits"}))
    return views.logits, views.token_logits, starts


def gaps(teacher: TextModel, student: TextModel, words: list[list[str]]) -> tuple[float, float]:
    """KL(teacher || student) of the intents, and of the slots at the words' first sub-tokens."""
    t_intent, t_slots, starts = outputs(teacher, words)
    s_intent, s_slots, _ = outputs(student, words)
    keep = starts >= 0

    def kl(t: torch.Tensor, s: torch.Tensor) -> float:
        t, s = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
        return float((t.exp() * (t - s)).sum(-1).mean())

    return kl(t_intent, s_intent), kl(t_slots[keep], s_slots[keep])


# --------------------------------------------------------------------------- data


def test_loader_gives_intents_and_tags_aligned_to_first_sub_tokens(nlu_dir):
    rows = tagged(160, 0)
    t = task()
    ds = t.train_dataset([src(nlu_dir)])
    assert ds.column_names == ["text", "words", "tags", "label", "index"]
    assert t.intents.label_names == INTENTS and t.slots.label_names == TAGS
    assert (t.num_labels, t.num_slots) == (2, len(TAGS))
    assert [INTENTS[i] for i in ds["label"][:10]] == [intent for _, _, intent in rows[:10]]
    assert [TAGS[i] for i in ds[3]["tags"]] == rows[3][1]

    model = joint_bert(0, layers=1)
    batch = Collator(model, [model], task=t)([ds[i] for i in range(8)])
    assert batch.labels.tolist() == ds["label"][:8]  # intents: one per sentence
    tags = batch.extra[TOKEN_LABELS]
    assert tags.shape == batch.student_inputs["input_ids"].shape
    for row, labels in enumerate(tags):
        assert labels[labels != IGNORE].tolist() == ds[row]["tags"]  # one per word, at its first sub-token
    assert len(t.load_eval(src(nlu_dir), "dev")) == 40 and t.is_labelled(t.load_eval(src(nlu_dir), "test"))


def test_jsonl_rows_carry_words_tags_and_intent(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"words": words, "tags": tags, "intent": intent} for words, tags, intent in tagged(6, 4)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    t = task()
    ds = t.train_dataset([src(path)])
    assert [t.intents.label_names[i] for i in ds["label"]] == [row["intent"] for row in rows]
    assert ds["words"] == [row["words"] for row in rows]


def test_rows_without_an_intent_are_an_error(tmp_path):
    folder = write_split(tmp_path / "train", tagged(4, 3))
    (folder / "label").unlink()
    with pytest.raises(DataError) as caught:
        task().train_dataset([src(tmp_path)])
    assert "row 1 has no intent" in str(caught.value) and "\n" not in str(caught.value)


def test_task_labels_name_intents_and_slot_labels_name_tags(nlu_dir):
    given = list(reversed(TAGS))
    t = task(labels=["describe", "act"], slot_labels=given)
    ds = t.train_dataset([src(nlu_dir)])
    assert ["describe", "act"][ds[0]["label"]] == tagged(1, 0)[0][2]
    assert [given[i] for i in ds[0]["tags"]] == tagged(1, 0)[0][1]
    with pytest.raises(DataError, match="label 'describe' is not one of the task's labels"):
        task(labels=["act", "other"]).train_dataset([src(nlu_dir)])


# --------------------------------------------------------------------------- metrics


def test_metrics_on_hand_made_predictions():
    gold_tags = [["B-who", "I-who", "O", "B-what"], ["O", "B-mood"], ["B-who", "O"]]
    tags = [["B-who", "O", "O", "B-what"], ["O", "B-mood"], ["B-who", "O"]]  # "the cat" cut short to "the"
    gold_intents = ["act", "describe", "act"]
    intents = ["act", "describe", "describe"]  # the third sentence's intent is wrong, its tags right
    metrics = joint_metrics(intents, gold_intents, tags, gold_tags)
    assert metrics["intent_accuracy"] == pytest.approx(200 / 3)
    assert metrics["slot_f1"] == pytest.approx(f1_score(gold_tags, tags) * 100)
    assert metrics["slot_f1"] == pytest.approx(75)  # 4 gold spans, 4 predicted, 3 exact: P = R = F1 = 3/4
    assert metrics["exact_match"] == pytest.approx(100 / 3)  # only the second sentence is right on both
    assert joint_metrics(gold_intents, gold_intents, gold_tags, gold_tags)["exact_match"] == 100


# --------------------------------------------------------------------------- training


def test_finetune_stage_raises_intent_accuracy_and_slot_f1(encoder_dir, nlu_dir, tmp_path):
    spec = recipe(nlu_dir, kind="finetune", student=str(encoder_dir))
    spec["training"]["max_steps"] = 80
    spec = validate_recipe(spec)
    assert [(m.name, m.args.get("view")) for m in spec.stages[0].methods] == [
        ("ce", "logits"),
        ("ce", "token_logits"),
    ]  # the default of a finetune stage: the sum of both cross-entropies
    results = kdforge.run(spec, tmp_path, show=False)
    tuned = load_model(str(tmp_path / "student"))
    assert tuned.kind == "joint" and tuned.config.slot_labels == TAGS and tuned.config.id2label[1] == "describe"

    t = task(labels=INTENTS, slot_labels=TAGS)  # the fresh heads' outputs have no names of their own
    fresh = load_model(str(encoder_dir), kind="joint", num_labels=len(INTENTS), num_slots=len(TAGS))
    before = t.evaluate(fresh, t.load_eval(src(nlu_dir), "dev"), "dev")
    after = results["metrics"]["student"]["eval"]
    assert {"intent_accuracy", "slot_f1", "slot_precision", "slot_recall", "exact_match"} <= set(after)
    assert results["primary_metric"] == "exact_match"
    assert before["slot_f1"] < 20 and after["slot_f1"] > 80, (before, after)
    assert before["intent_accuracy"] < 75 and after["intent_accuracy"] > 90, (before, after)
    assert after["exact_match"] > 80, after


def test_default_methods_run_once_per_head(joint_teacher_dir, nlu_dir):
    stage = validate_recipe(recipe(nlu_dir, teacher=str(joint_teacher_dir), student={"num_layers": 1})).stages[0]
    assert [(m.name, m.args["view"]) for m in stage.methods] == [("kd", "logits"), ("kd", "token_logits")]


def test_kd_brings_a_joint_pqrnn_student_to_its_teacher_on_both_heads(joint_teacher_dir, nlu_dir, tmp_path):
    teacher = load_model(str(joint_teacher_dir))
    assert teacher.kind == "joint" and (teacher.num_labels, teacher.num_slots) == (2, len(TAGS))
    words = [w for w, _, _ in tagged(40, 7)]
    fresh, report = build_student(teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY_PQRNN)))
    assert fresh.kind == "joint" and fresh.num_parameters() == parameter_count(
        64, 32, 16, 2, 2, len(INTENTS), "joint", slots=len(TAGS)
    )
    intent_before, slots_before = gaps(teacher, fresh, words)

    spec = recipe(nlu_dir, teacher=str(joint_teacher_dir), student={"pqrnn": TINY_PQRNN})
    spec["methods"] = [
        {"name": "kd", "temperature": 2.0},
        {"name": "kd", "view": "token_logits", "temperature": 2.0},
    ]
    # as the recipes train it: half the rows misspelt each epoch, their words (and tags) one for one
    spec["training"] |= {"lr": 1e-2, "max_steps": 80, "augment": {"share": 0.5, "probability": 0, "distortion": 0.1}}
    results = kdforge.run(validate_recipe(spec), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    intent_after, slots_after = gaps(teacher, student, words)

    assert intent_after < 0.5 * intent_before, (intent_before, intent_after)
    assert slots_after < 0.5 * slots_before, (slots_before, slots_after)
    assert student.config.slot_labels == TAGS and student.config.id2label == teacher.config.id2label
    agreement = results["agreement"]
    assert {"intent_agreement", "slot_agreement", "exact_match_vs_teacher", "slot_f1_vs_teacher"} == set(agreement)
    assert "exact_match" in results["metrics"]["teacher"]["eval"]


def test_layer_cut_student_keeps_the_teachers_blocks_and_heads(joint_teacher_dir):
    teacher = load_model(str(joint_teacher_dir))
    student, report = build_student(teacher, StudentSpec(layers=[0, 3]))
    assert student.kind == "joint" and student.num_layers == 2 and report.fresh == 0
    weights = student.hf.state_dict()
    source = teacher.hf.state_dict()
    assert torch.equal(weights["intent_classifier.weight"], source["intent_classifier.weight"])
    assert torch.equal(weights["slot_classifier.weight"], source["slot_classifier.weight"])
    key = "backbone.encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(weights[key.format(1)], source[key.format(3)])


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("architecture", ["bert", "pqrnn"])
def test_save_and_load_give_the_same_two_outputs(architecture, joint_teacher_dir, tmp_path):
    from transformers import AutoModel

    teacher = load_model(str(joint_teacher_dir))
    model = teacher if architecture == "bert" else build_student(teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY_PQRNN)))[0]
    folder = export(model, tmp_path / "model")  # hf, the default for a joint model
    loaded = load_model(str(folder))
    assert loaded.kind == "joint" and loaded.config.slot_labels == TAGS
    words = [w for w, _, _ in tagged(6, 9)]
    for a, b in zip(outputs(model, words)[:2], outputs(loaded, words)[:2], strict=True):
        torch.testing.assert_close(a, b)
    plain = AutoModel.from_pretrained(folder)  # no remote code: the class is registered when kdforge is imported
    assert type(plain) is JointIntentSlotModel


@pytest.mark.parametrize("architecture", ["bert", "pqrnn"])
def test_onnx_export_gives_both_heads_and_the_same_scores(architecture, joint_teacher_dir, nlu_dir, tmp_path):
    from kdforge.engine.pipeline import evaluate_model
    from kdforge.models.onnx_model import OnnxTextModel

    teacher = load_model(str(joint_teacher_dir))
    model = teacher if architecture == "bert" else build_student(teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY_PQRNN)))[0]
    export(model, tmp_path / "pt", "hf")
    export(model, tmp_path / "onnx", "onnx")
    export(model, tmp_path / "int8", "onnx-int8")
    graph = load_model(str(tmp_path / "onnx"))
    assert isinstance(graph, OnnxTextModel) and graph.kind == "joint"
    assert graph.config.slot_labels == TAGS and (graph.num_labels, graph.num_slots) == (2, len(TAGS))
    words = [w for w, _, _ in tagged(9, 9)]  # different lengths: the sequence axis is dynamic
    for a, b in zip(outputs(model, words), outputs(graph, words), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)

    source = src(nlu_dir, split="test")
    scores = {name: evaluate_model(str(tmp_path / name), "intent_slots", source, "test") for name in ("pt", "onnx")}
    assert scores["onnx"] == pytest.approx(scores["pt"], abs=1e-9)
    quantized = evaluate_model(str(tmp_path / "int8"), "intent_slots", source, "test")
    assert abs(quantized["intent_accuracy"] - scores["pt"]["intent_accuracy"]) <= 100 / 24 + 1e-9  # one sentence
    assert abs(quantized["slot_f1"] - scores["pt"]["slot_f1"]) <= 10


def test_bench_times_and_scores_joint_models_in_both_formats(joint_teacher_dir, nlu_dir, tmp_path):
    from kdforge.engine.pipeline import evaluate_model
    from kdforge.evaluate.bench import bench

    export(load_model(str(joint_teacher_dir)), tmp_path / "onnx", "onnx")
    source = src(nlu_dir, split="test")
    result = bench(
        [str(joint_teacher_dir), str(tmp_path / "onnx")],
        task="intent_slots",
        data=source,
        split="test",
        sentences=24,
        latency_sentences=4,
        batch_size=8,
        rounds=1,
        threads=1,
    )
    pytorch, onnx = result["models"]
    assert (pytorch["format"], onnx["format"]) == ("pytorch fp32", "onnx fp32")
    assert result["settings"]["metric"] == "exact_match"
    expected = evaluate_model(str(joint_teacher_dir), "intent_slots", source, "test")
    assert pytorch["metrics"] == pytest.approx(expected) and onnx["metrics"] == pytest.approx(expected)
    assert all(m["sentences_per_second"] > 0 and m["latency_ms_p50"] > 0 for m in result["models"])


# --------------------------------------------------------------------------- errors


def test_a_non_joint_teacher_is_refused_with_a_clear_error(classifier_teacher_dir, nlu_dir, tmp_path):
    spec = recipe(nlu_dir, teacher=str(classifier_teacher_dir), student={"pqrnn": TINY_PQRNN})
    with pytest.raises(ModelError) as caught:
        kdforge.run(validate_recipe(spec), tmp_path, show=False)
    message = str(caught.value)
    assert "is a classifier model, but intent_slots needs a joint intent + slot model" in message
    assert "kind: finetune" in message and "\n" not in message


def test_slot_methods_need_joint_models():
    joint = ModelShape("joint", 2, 32, 4, 2, 32, output_size=2, num_slots=6)
    tagger = ModelShape("token_classifier", 2, 32, 4, 6, 32, output_size=6)
    kd = METHODS.get("kd")
    ce = METHODS.get("ce")
    for view in ("logits", "token_logits"):
        kd(kd.parse_args({"view": view})).setup(Pair(teacher=joint, student=joint, same_tokenizer=True))
    with pytest.raises(IncompatibleError, match="slot head of joint models"):
        kd(kd.parse_args({"view": "token_logits"})).setup(Pair(teacher=tagger, student=tagger, same_tokenizer=True))
    with pytest.raises(IncompatibleError, match="tokenize alike"):
        kd(kd.parse_args({"view": "token_logits"})).setup(Pair(teacher=joint, student=joint, same_tokenizer=False))
    fewer = ModelShape("joint", 2, 32, 4, 2, 32, output_size=2, num_slots=5)
    with pytest.raises(IncompatibleError, match="6 slot tags and the student 5"):
        kd(kd.parse_args({"view": "token_logits"})).setup(Pair(teacher=joint, student=fewer, same_tokenizer=True))
    with pytest.raises(IncompatibleError, match="joint model's slot head"):
        ce(ce.parse_args({"view": "token_logits"})).setup(Pair(teacher=None, student=tagger, same_tokenizer=True))
    assert kd(kd.parse_args({"view": "token_logits"})).student_needs() == {"token_logits"}


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", ["snips-joint", "atis-joint"])
def test_joint_recipes_validate(name, monkeypatch):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    monkeypatch.setenv("KDFORGE_DATA", str(SHARED_DATA))
    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml")
    finetune, distill = recipe.stages
    assert finetune.task.name == distill.task.name == "intent_slots"
    assert [m.args.get("view", "logits") for m in finetune.methods] == ["logits", "token_logits"]
    assert [(m.name, m.args.get("view", "logits")) for m in distill.methods] == [
        ("kd", "logits"),
        ("kd", "token_logits"),
        ("ce", "logits"),
        ("ce", "token_logits"),
    ]
    assert distill.student.pqrnn is not None
