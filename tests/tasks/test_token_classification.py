"""The token_classification task: the ATIS/SNIPS layout, word-to-sub-token alignment, span F1, training."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from torch import nn

import kdforge
from kdforge.engine.collate import Collator
from kdforge.errors import DataError, IncompatibleError, ModelError
from kdforge.evaluate.metrics import span_metrics
from kdforge.methods.base import ModelShape, Pair
from kdforge.methods.predictions import check_same_predictions
from kdforge.models import build_student, load_model
from kdforge.models.views import Views
from kdforge.recipe import StudentSpec, validate_recipe
from kdforge.recipe.schema import AugmentSpec, DataSource, TaskSpec
from kdforge.tasks import TASKS
from kdforge.tasks.augment import Augmenter
from kdforge.tasks.data import load_source
from kdforge.tasks.token_classification import (
    IGNORE,
    TokenClassification,
    align_labels,
    encode_words,
    predict_tags,
)
from tests.conftest import NEGATIVE, OBJECTS, POSITIVE, SUBJECTS, VERBS, bert_config, needs_shared_data, vocabulary

TAGS = ["O", "B-mood", "B-what", "B-who", "I-what", "I-who"]  # the order the task learns them in


def task(**spec) -> TokenClassification:
    return TASKS.get("token_classification")(TaskSpec(name="token_classification", **spec))


def src(path: Path, **fields) -> DataSource:
    return DataSource.model_validate({"path": str(path), **fields})


def bio(words: list[str], kind: str) -> list[str]:
    return [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)


def tagged(n: int, seed: int) -> list[tuple[list[str], list[str], str]]:
    """Slot-filling-like rows: who (subject) does what (object), sometimes with a mood; intent by mood."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        subject, obj = rng.choice(SUBJECTS).split(), rng.choice(OBJECTS).split()
        words = [*subject, rng.choice(VERBS), *obj]
        tags = [*bio(subject, "who"), "O", *bio(obj, "what")]
        intent = "act"
        if rng.random() < 0.5:
            words += ["and", "it", "was", rng.choice(POSITIVE + NEGATIVE)]
            tags += ["O", "O", "O", "B-mood"]
            intent = "describe"
        rows.append(([*words, "."], [*tags, "O"], intent))
    return rows


def write_split(folder: Path, rows: list[tuple[list[str], list[str], str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seq.in").write_text("".join(" ".join(words) + "\n" for words, _, _ in rows))
    (folder / "seq.out").write_text("".join(" ".join(tags) + " \n" for _, tags, _ in rows))  # SNIPS: trailing space
    (folder / "label").write_text("".join(intent + "\n" for _, _, intent in rows))
    return folder


@pytest.fixture(scope="module")
def slots_dir(tmp_path_factory) -> Path:
    """An ATIS-style folder: train / valid / test, each with seq.in, seq.out and label."""
    folder = tmp_path_factory.mktemp("slots")
    for split, n, seed in (("train", 160, 0), ("valid", 40, 1), ("test", 24, 2)):
        write_split(folder / split, tagged(n, seed))
    return folder


def wordpiece(words: list[str]):
    """A fast WordPiece tokenizer over ``words`` (``##`` marks a word's later pieces)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=64)


PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "fly", "##ing", "to", "bos", "##ton"]


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory) -> Path:
    """A 4-layer BERT token classifier over TAGS (random weights), with a fast tokenizer."""
    from transformers import BertForTokenClassification

    folder = tmp_path_factory.mktemp("tagger")
    tokenizer = wordpiece(vocabulary())
    torch.manual_seed(4)
    config = bert_config(num_labels=len(TAGS), initializer_range=0.2)
    config.id2label = dict(enumerate(TAGS))
    config.label2id = {tag: i for i, tag in enumerate(TAGS)}
    BertForTokenClassification(config).eval().save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder without a head (what a finetune stage starts from)."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(5)
    BertModel(bert_config(layers=2)).save_pretrained(folder)
    wordpiece(vocabulary()).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- the ATIS/SNIPS layout


def test_loader_reads_atis_layout_for_both_tasks(slots_dir):
    rows = tagged(160, 0)
    tokens = task().train_dataset([src(slots_dir)])
    assert tokens.column_names == ["text", "words", "tags", "index"]
    assert len(tokens) == 160
    assert tokens[3]["words"] == rows[3][0]
    assert [TAGS[i] for i in tokens[3]["tags"]] == rows[3][1]  # trailing spaces in seq.out are no tags
    assert tokens[3]["text"] == " ".join(rows[3][0])
    # intents: the classification task reads the same folder (text = seq.in, label = label)
    intents = TASKS.get("classification")(TaskSpec(name="classification")).train_dataset([src(slots_dir)])
    assert intents["text"][3] == " ".join(rows[3][0]) and intents["label"][3] == ["act", "describe"].index(rows[3][2])
    # splits: valid is the dev split; a split folder can be named directly; limit cuts
    assert len(load_source(src(slots_dir), "dev")) == 40
    assert len(load_source(src(slots_dir), "test")) == 24
    assert len(load_source(src(slots_dir / "test", format="atis"))) == 24
    assert len(task().load_eval(src(slots_dir, limit=5), "dev")) == 5


def test_words_and_tags_count_mismatch_names_file_and_line(tmp_path):
    folder = write_split(tmp_path / "train", tagged(4, 3))
    lines = (folder / "seq.out").read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:-1])
    (folder / "seq.out").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        task().train_dataset([src(tmp_path)])
    message = str(caught.value)
    assert f"{folder / 'seq.out'}:2:" in message and "tags for the" in message and "\n" not in message


def test_files_of_different_lengths_are_an_error(tmp_path):
    folder = write_split(tmp_path / "train", tagged(4, 3))
    (folder / "label").write_text("act\nact\n")
    with pytest.raises(DataError, match="label: 2 lines, but seq.in has 4"):
        load_source(src(tmp_path), "train")


def test_tag_outside_task_labels_is_an_error(slots_dir):
    with pytest.raises(DataError) as caught:
        task(labels=["O", "B-who", "I-who", "B-what", "I-what"]).train_dataset([src(slots_dir)])
    assert "tag 'B-mood' is not one of the task's tags" in str(caught.value)
    assert "row " in str(caught.value) and "\n" not in str(caught.value)


def test_labels_come_from_the_data_or_task_labels(slots_dir):
    learned = task()
    learned.train_dataset([src(slots_dir)])
    assert learned.label_names == TAGS and learned.num_labels == len(TAGS)
    given = list(reversed(TAGS))
    fixed = task(labels=given)
    ds = fixed.train_dataset([src(slots_dir)])
    assert [given[i] for i in ds[0]["tags"]] == tagged(1, 0)[0][1]
    with pytest.raises(DataError, match="task.num_labels is 3"):
        task(num_labels=3).train_dataset([src(slots_dir)])


# --------------------------------------------------------------------------- alignment


def test_labels_sit_on_each_words_first_sub_token():
    tokenizer = wordpiece(PIECES)
    inputs, starts = encode_words(tokenizer, [["flying", "to", "boston"], ["to", "fly"]], max_length=16)
    pieces = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    assert pieces == ["[CLS]", "fly", "##ing", "to", "bos", "##ton", "[SEP]"]
    assert starts.tolist() == [[-1, 0, -1, 1, 2, -1, -1], [-1, 0, 1, -1, -1, -1, -1]]
    labels = align_labels(starts, [[5, 6, 7], [8, 9]])
    assert labels.tolist() == [
        [IGNORE, 5, IGNORE, 6, 7, IGNORE, IGNORE],
        [IGNORE, 8, 9, IGNORE, IGNORE, IGNORE, IGNORE],
    ]
    # words cut off by max_length have no position (and no target)
    _, cut = encode_words(tokenizer, [["flying", "to", "boston"]], max_length=4)
    assert cut.tolist() == [[-1, 0, -1, -1]]


def test_augmented_rows_keep_their_tags(tagger_dir, slots_dir):
    """Character distortion (pQRNN) misspells words one for one: every word keeps its tag."""
    model = load_model(str(tagger_dir))
    t = task()
    ds = t.train_dataset([src(slots_dir)])
    rows = [ds[i] for i in range(8)]
    collator = Collator(model, [model], task=t)
    plain = collator(rows)
    collator.augmenter = Augmenter(AugmentSpec(share=1.0, probability=0, distortion=1.0), None, seed=0)
    augmented = collator(rows)
    decode = model.tokenizer.batch_decode
    assert decode(augmented.student_inputs["input_ids"]) != decode(plain.student_inputs["input_ids"])
    for batch in (plain, augmented):
        for labels, row in zip(batch.labels, rows, strict=True):
            assert labels[labels != IGNORE].tolist() == row["tags"]


class LookupTagger(nn.Module):
    """A stand-in token classifier whose prediction at each sub-token is a fixed function of the token."""

    kind = "token_classifier"
    max_length = 16
    device = torch.device("cpu")

    def __init__(self, tokenizer, tag_of: dict[str, int], classes: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.tag_of = torch.tensor([tag_of.get(t, 0) for t in tokenizer.convert_ids_to_tokens(range(len(tokenizer)))])
        self.classes = classes

    def forward(self, inputs: dict, needs=frozenset()) -> Views:
        logits = nn.functional.one_hot(self.tag_of[inputs["input_ids"]], self.classes).float()
        return Views(attention_mask=inputs["attention_mask"], logits=logits)


def test_predictions_are_read_at_the_first_sub_token():
    tokenizer = wordpiece(PIECES)
    names = ["O", "B-city", "I-city"]
    # "##ing" and "##ton" say I-city: ignored, as only each word's first sub-token is read
    model = LookupTagger(tokenizer, {"bos": 1, "##ing": 2, "##ton": 2}, len(names))
    assert predict_tags(model, [["flying", "to", "boston"], ["boston"]], names) == [["O", "O", "B-city"], ["B-city"]]


# --------------------------------------------------------------------------- span F1


def test_span_f1_is_seqeval_and_counts_a_wrong_boundary_as_a_miss():
    gold = [["B-who", "I-who", "O", "B-what", "I-what"], ["O", "B-mood"]]
    predicted = [["B-who", "O", "O", "B-what", "I-what"], ["O", "B-mood"]]  # "the cat" cut short to "the"
    metrics = span_metrics(predicted, gold)
    # 3 gold spans, 3 predicted, 2 exact: precision = recall = F1 = 2/3
    assert metrics["f1"] == pytest.approx(200 / 3)
    assert metrics["precision"] == pytest.approx(precision_score(gold, predicted) * 100)
    assert metrics["recall"] == pytest.approx(recall_score(gold, predicted) * 100)
    assert metrics["f1"] == pytest.approx(f1_score(gold, predicted) * 100)
    assert metrics["accuracy"] == pytest.approx(600 / 7)
    assert span_metrics(gold, gold)["f1"] == 100
    # a wrong type on a right boundary is a miss too
    assert span_metrics([["B-who", "I-who", "O", "B-who", "I-who"], ["O", "B-mood"]], gold)["f1"] == pytest.approx(
        200 / 3
    )


# --------------------------------------------------------------------------- training


def recipe(train: Path, **stage) -> dict:
    return {
        "name": "tiny-slots",
        "task": {"name": "token_classification"},
        "data": {"train": [str(train)], "eval": {"path": str(train), "split": "dev"}},
        "training": {"batch_size": 16, "lr": 3e-3, "max_steps": 60, "log_every": 10, "save_every": 1000},
        "output": {"benchmark": False},
        **stage,
    }


def test_finetune_stage_raises_span_f1(encoder_dir, slots_dir, tmp_path):
    spec = recipe(slots_dir, kind="finetune", student=str(encoder_dir))
    results = kdforge.run(validate_recipe(spec), tmp_path, show=False)
    tuned = load_model(str(tmp_path / "student"))
    assert tuned.kind == "token_classifier" and tuned.config.id2label[1] == "B-mood"

    t = task(labels=TAGS)  # the fresh head's outputs have no names of their own
    before = t.evaluate(
        load_model(str(encoder_dir), kind="token_classifier", num_labels=len(TAGS)),
        t.load_eval(src(slots_dir), "dev"),
        "dev",
    )
    after = results["metrics"]["student"]["eval"]
    assert {"f1", "precision", "recall", "accuracy"} <= set(after)
    assert before["f1"] < 20 and after["f1"] > 80, (before, after)


def token_gap(teacher, student, words) -> float:
    """KL(teacher || student) at the words' first sub-tokens."""
    inputs, starts = encode_words(teacher.tokenizer, words, 32)
    keep = starts >= 0
    with torch.no_grad():
        t = torch.log_softmax(teacher(inputs).logits[keep], -1)
        s = torch.log_softmax(student(inputs).logits[keep], -1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def test_kd_brings_a_token_classifier_student_to_its_teacher(tagger_dir, slots_dir, tmp_path):
    teacher = load_model(str(tagger_dir))
    assert teacher.kind == "token_classifier" and teacher.num_labels == len(TAGS)
    words = [w for w, _, _ in tagged(40, 7)]
    fresh = build_student(teacher, StudentSpec(num_layers=1, init="fresh"))[0]
    before = token_gap(teacher, fresh, words)

    spec = recipe(slots_dir, teacher=str(tagger_dir), student={"num_layers": 1, "init": "fresh"})
    spec["methods"] = [{"name": "kd", "temperature": 2.0}]
    results = kdforge.run(validate_recipe(spec), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    after = token_gap(teacher, student, words)

    assert after < 0.5 * before, (before, after)
    assert student.config.id2label == teacher.config.id2label  # the teacher's tags, in its order
    assert results["agreement"]["prediction_agreement"] > 50
    assert "f1" in results["metrics"]["teacher"]["eval"] and "f1_vs_teacher" in results["agreement"]


def test_onnx_export_tags_like_the_pytorch_model(tagger_dir, slots_dir, tmp_path):
    from kdforge.engine.pipeline import evaluate_model
    from kdforge.export import export
    from kdforge.models.onnx_model import OnnxTextModel

    model = load_model(str(tagger_dir))
    export(model, tmp_path / "onnx", "onnx")
    graph = load_model(str(tmp_path / "onnx"))
    assert isinstance(graph, OnnxTextModel) and graph.kind == "token_classifier" and graph.num_labels == len(TAGS)
    words = [w for w, _, _ in tagged(9, 3)]  # different lengths: the sequence axis is dynamic
    inputs, _ = encode_words(model.tokenizer, words, 32)
    with torch.no_grad():
        expected = model.eval()(inputs, frozenset({"logits"})).logits
    torch.testing.assert_close(graph(inputs, frozenset({"logits"})).logits, expected, atol=1e-4, rtol=0)
    assert predict_tags(graph, words, TAGS) == predict_tags(model, words, TAGS)
    source = DataSource.model_validate({"path": str(slots_dir), "split": "test"})
    onnx_scores = evaluate_model(str(tmp_path / "onnx"), "token_classification", source, "test")
    assert onnx_scores == pytest.approx(evaluate_model(str(tagger_dir), "token_classification", source, "test"))


def test_token_kd_needs_one_tokenization():
    shape = ModelShape("token_classifier", 2, 32, 4, 6, 32, output_size=6)
    with pytest.raises(IncompatibleError, match="tokenize alike"):
        check_same_predictions(Pair(teacher=shape, student=shape, same_tokenizer=False), "kd")
    check_same_predictions(Pair(teacher=shape, student=shape, same_tokenizer=True), "kd")


def test_teacher_tags_must_match_task_labels(tagger_dir):
    teacher = load_model(str(tagger_dir))
    adopting = task()
    adopting.check_teacher(teacher, "t")
    assert adopting.label_names == TAGS
    with pytest.raises(ModelError, match="give task.labels in the teacher's order"):
        task(labels=list(reversed(TAGS))).check_teacher(teacher, "t")


def test_slow_tokenizer_is_refused():
    class Slow:  # a Python tokenizer cannot say which word each sub-token came from
        is_fast = False

    with pytest.raises(ModelError, match="needs a fast tokenizer"):
        encode_words(Slow(), [["the", "cat"]], 16)


# --------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "counts"),
    [("atis", {"train": 4478, "dev": 500, "test": 893}), ("snips", {"train": 13084, "dev": 700, "test": 700})],
)
def test_shared_atis_and_snips(name, counts):
    folder = needs_shared_data(name)
    for split, count in counts.items():
        intents = load_source(src(folder), split)
        slots = task().load_eval(src(folder), split)
        assert len(intents) == len(slots) == count, split
        assert all(len(w) == len(t) for w, t in zip(slots["words"], slots["tags"], strict=True))
        assert intents["text"] == slots["text"]
    assert len(set(load_source(src(folder), "train")["label"])) > 5
