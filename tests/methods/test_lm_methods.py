"""Language-model methods: losses by hand, pair checks, short training runs and whole recipes.

mlm, distilbert and glmd on a tiny BERT masked LM (task mlm); forward_kl, reverse_kl, jsd and
tvd on a tiny GPT-2 (task lm). Expected values are computed with plain Python (``math``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import kdforge
from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import shape
from kdforge.engine.trainer import train
from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.mlm import masked_lm_loss, next_token_loss
from kdforge.methods.predictions import predicting_positions
from kdforge.methods.token_divergence import forward_kl, generalized_jsd, reverse_kl, total_variation
from kdforge.models import build_student, load_model
from kdforge.models.views import Views
from kdforge.recipe import StudentSpec, TaskSpec, TrainingSpec, load_recipe, validate_recipe
from kdforge.recipe.schema import DataSource
from kdforge.tasks import TASKS
from tests.conftest import sentences
from tests.language_models import causal_lm_folder, masked_lm_folder

HUGE = 1.0e6  # what padded positions hold: must not leak into any loss
RECIPES = Path(__file__).resolve().parents[2] / "recipes"

S = [[0.0, 1.0, 3.0], [2.0, -1.0, 0.5]]  # student logit rows
T = [[1.0, 2.0, 0.5], [0.0, 0.0, 4.0]]  # teacher logit rows


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(z / temperature) for z in row]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def rows(temperature: float = 1.0):
    """(student, teacher) probability rows."""
    return [softmax(r, temperature) for r in S], [softmax(r, temperature) for r in T]


def tensors():
    return torch.tensor(S), torch.tensor(T)


# ---------------------------------------------------------------- divergences by hand


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_forward_and_reverse_kl_by_hand(temperature):
    qs, ps = rows(temperature)
    s, t = tensors()
    assert forward_kl(s, t, temperature).item() == pytest.approx(
        mean(kl(p, q) for p, q in zip(ps, qs, strict=True)), rel=1e-5
    )
    assert reverse_kl(s, t, temperature).item() == pytest.approx(
        mean(kl(q, p) for p, q in zip(ps, qs, strict=True)), rel=1e-5
    )


def test_generalized_jsd_by_hand():
    qs, ps = rows()
    s, t = tensors()
    beta = 0.3
    expected = []
    for p, q in zip(ps, qs, strict=True):
        m = [beta * pv + (1 - beta) * qv for pv, qv in zip(p, q, strict=True)]
        expected.append(beta * kl(p, m) + (1 - beta) * kl(q, m))
    assert generalized_jsd(s, t, beta).item() == pytest.approx(mean(expected), rel=1e-5)


def test_jsd_ends_are_forward_and_reverse_kl():
    s, t = tensors()
    assert generalized_jsd(s, t, 0.0).item() == pytest.approx(forward_kl(s, t).item(), rel=1e-6)
    assert generalized_jsd(s, t, 1.0).item() == pytest.approx(reverse_kl(s, t).item(), rel=1e-6)
    # near the ends the interior formula shrinks with beta, in the direction of that end
    small = 1e-4
    assert generalized_jsd(s, t, small).item() / small == pytest.approx(forward_kl(s, t).item(), rel=1e-2)
    assert generalized_jsd(s, t, 1 - small).item() / small == pytest.approx(reverse_kl(s, t).item(), rel=1e-2)


def test_total_variation_by_hand():
    qs, ps = rows(2.0)
    s, t = tensors()
    expected = mean(0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True)) for p, q in zip(ps, qs, strict=True))
    assert total_variation(s, t, 2.0).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [forward_kl, reverse_kl, total_variation, generalized_jsd])
def test_identical_distributions_give_zero_and_no_rows_give_zero(loss):
    s, _ = tensors()
    assert loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(s[:0], s[:0]).item() == 0.0  # nothing to compare: zero, not NaN


# ---------------------------------------------------------------- positions


def test_causal_positions_predict_real_targets():
    right = torch.tensor([[1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    assert predicting_positions(right).tolist() == [[True, True, False, False, False]]
    assert predicting_positions(left).tolist() == [[False, False, True, True, False]]
    labels = torch.tensor([[-100, -100, 7, 8, -100]])  # a prompt whose targets are ignored
    assert predicting_positions(torch.ones(1, 5), labels).tolist() == [[False, True, True, False, False]]


def views(logits, mask, hidden=None) -> Views:
    return Views(attention_mask=mask, logits=logits, hidden_states=hidden)


def lm_shape(kind: str, vocab: int = 3, hidden: int = 4) -> ModelShape:
    return ModelShape(kind, 2, hidden, 2, None, hidden, output_size=vocab)


def test_token_divergence_methods_skip_padding_and_the_last_position():
    """On a causal LM, rows are the positions predicting a real token; padding holds HUGE."""
    mask = torch.tensor([[1, 1, 1, 0]])
    s = torch.tensor([[S[0], S[1], [HUGE, 0.0, 0.0], [HUGE, -HUGE, 0.0]]])
    t = torch.tensor([[T[0], T[1], [0.0, HUGE, 0.0], [0.0, 0.0, HUGE]]])
    labels = torch.tensor([[5, 6, 7, -100]])
    qs, ps = rows()
    for name, expected in [
        ("forward_kl", mean(kl(p, q) for p, q in zip(ps, qs, strict=True))),
        ("reverse_kl", mean(kl(q, p) for p, q in zip(ps, qs, strict=True))),
        ("tvd", mean(0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True)) for p, q in zip(ps, qs, strict=True))),
    ]:
        cls = METHODS.get(name)
        method = cls()
        method.setup(Pair(lm_shape("causal_lm"), lm_shape("causal_lm"), same_tokenizer=True))
        batch = Batch({}, [], torch.arange(1), labels=labels)
        assert method(views(t, mask), views(s, mask), batch).item() == pytest.approx(expected, rel=1e-5), name


def test_glmd_is_t2_kl_at_every_real_token_of_a_masked_lm():
    mask = torch.tensor([[1, 1, 0]])
    s = torch.tensor([[S[0], S[1], [HUGE, 0.0, 0.0]]])
    t = torch.tensor([[T[0], T[1], [0.0, HUGE, 0.0]]])
    labels = torch.tensor([[-100, 4, -100]])  # only one masked token: glmd still reads both real ones
    method = METHODS.get("glmd")()
    method.setup(Pair(lm_shape("masked_lm"), lm_shape("masked_lm"), same_tokenizer=True))
    qs, ps = rows(15.0)
    expected = 15.0**2 * mean(kl(p, q) for p, q in zip(ps, qs, strict=True))
    got = method(views(t, mask), views(s, mask), Batch({}, [], torch.arange(1), labels=labels))
    assert got.item() == pytest.approx(expected, rel=1e-4)
    assert method.args.temperature == 15.0


def test_distilbert_triple_loss_by_hand():
    mask = torch.tensor([[1, 1, 0]])
    s = torch.tensor([[S[0], S[1], [HUGE, 0.0, 0.0]]])
    t = torch.tensor([[T[0], T[1], [0.0, HUGE, 0.0]]])
    labels = torch.tensor([[-100, 2, -100]])
    hs = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [HUGE, 0.0, 0.0, 0.0]]])
    ht = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, HUGE, 0.0, 0.0]]])
    method = METHODS.get("distilbert")()
    method.setup(Pair(lm_shape("masked_lm"), lm_shape("masked_lm"), same_tokenizer=True))
    got = method(views(t, mask, (ht, ht)), views(s, mask, (hs, hs)), Batch({}, [], torch.arange(1), labels=labels))
    qs, ps = rows(2.0)
    ce = 4.0 * mean(kl(p, q) for p, q in zip(ps, qs, strict=True))  # T^2 KL at both real tokens
    mlm = -math.log(softmax(S[1])[2])  # the one masked token, target id 2
    cos = mean([1 - 1.0, 1 - 1 / math.sqrt(2)])  # two real tokens
    assert got.item() == pytest.approx(5 * ce + 2 * mlm + 1 * cos, rel=1e-5)
    assert method.needs == {"logits", "hidden_states"} and method.needs_labels
    quiet = METHODS.get("distilbert")(METHODS.get("distilbert").parse_args({"alpha_cos": 0, "alpha_mlm": 0}))
    assert quiet.needs == {"logits"} and not quiet.needs_labels


def test_mlm_and_next_token_losses_by_hand():
    logits = torch.tensor([[S[0], S[1], T[1]]])
    labels = torch.tensor([[-100, 0, -100]])
    assert masked_lm_loss(logits, labels).item() == pytest.approx(-math.log(softmax(S[1])[0]), rel=1e-6)
    ids = torch.tensor([[2, 1, -100]])  # position 0 predicts 1, position 1 predicts padding (ignored)
    assert next_token_loss(logits, ids).item() == pytest.approx(-math.log(softmax(S[0])[1]), rel=1e-6)
    nothing = masked_lm_loss(logits.requires_grad_(), torch.full((1, 3), -100))
    assert nothing.item() == 0.0 and nothing.requires_grad


# ---------------------------------------------------------------- pair checks


def test_pair_checks_name_the_problem():
    mlm_pair = Pair(lm_shape("masked_lm"), lm_shape("masked_lm"), same_tokenizer=True)
    with pytest.raises(IncompatibleError, match="3 vocabulary entries and the student 5"):
        METHODS.get("reverse_kl")().setup(Pair(lm_shape("causal_lm"), lm_shape("causal_lm", vocab=5), True))
    with pytest.raises(IncompatibleError, match="tokenize alike"):
        METHODS.get("glmd")().setup(Pair(lm_shape("masked_lm"), lm_shape("masked_lm"), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="same kind"):
        METHODS.get("jsd")().setup(Pair(lm_shape("masked_lm"), lm_shape("causal_lm"), True))
    classifier = ModelShape("classifier", 2, 4, 2, 2, 4)
    with pytest.raises(IncompatibleError, match="language-model student"):
        METHODS.get("mlm")().setup(Pair(None, classifier, True))
    with pytest.raises(IncompatibleError, match="language-model teacher and student"):
        METHODS.get("distilbert")().setup(Pair(classifier, classifier, True))
    METHODS.get("mlm")().setup(mlm_pair)
    with pytest.raises(ValueError, match="beta"):
        METHODS.get("jsd").parse_args({"beta": 1.5})


# ---------------------------------------------------------------- each method alone on a short run


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-teachers")
    return {
        "mlm": load_model(str(masked_lm_folder(folder / "mlm"))),
        "lm": load_model(str(causal_lm_folder(folder / "lm"))),
    }


TASK_OF = {"mlm": "mlm", "distilbert": "mlm", "glmd": "mlm", "forward_kl": "lm", "reverse_kl": "lm"}
TASK_OF |= {"jsd": "lm", "tvd": "lm"}


def held_out_loss(method, teacher, student, batch) -> float:
    with torch.no_grad():
        student.eval()
        method.eval()
        t_views = teacher(batch.teacher_inputs[0], method.teacher_needs()) if method.needs_teacher else None
        loss = float(method(t_views, student(batch.student_inputs, method.student_needs()), batch))
        method.train()
        return loss


@pytest.mark.parametrize("name", list(TASK_OF))
def test_method_alone_lowers_its_loss(name, teachers, data_dir, tmp_path):
    task_name = TASK_OF[name]
    teacher = teachers[task_name]
    task = TASKS.get(task_name)(TaskSpec(name=task_name))
    student, _ = build_student(teacher, StudentSpec(num_layers=1, init="fresh"))
    cls = METHODS.get(name)
    method = cls()
    used = [teacher] if method.needs_teacher else []
    method.setup(Pair(shape(teacher) if used else None, shape(student), same_tokenizer=True))
    dataset = task.train_dataset([DataSource.model_validate({"path": str(data_dir / "train.txt")})])
    rows = [{"text": t, "index": i} for i, t in enumerate(sentences(32, seed=11))]
    batch = Collator(student, [teacher], task=task)(rows)
    before = held_out_loss(method, teacher, student, batch)

    training = TrainingSpec(max_steps=40, batch_size=16, lr=3e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(student, used, [method], [1.0], dataset, training, tmp_path, seed=0, fingerprint=name, task=task)
    after = held_out_loss(method, teacher, student, batch)
    assert after < 0.9 * before, (before, after)


# ---------------------------------------------------------------- whole recipes


def test_glmd_then_a_task_stage_on_a_cut_of_the_compressed_student(
    teachers, classifier_teacher_dir, data_dir, tmp_path
):
    training = {"batch_size": 16, "lr": 2e-3, "max_steps": 20, "save_every": 100, "log_every": 5}
    recipe = {
        "name": "tiny-glmd",
        "stages": [
            {
                "name": "general",
                "teacher": str(teachers["mlm"].name),
                "student": {"num_layers": 2, "vocabulary": {"keep": 0.75}},
                "task": {"name": "mlm"},
                "data": {"train": [str(data_dir / "train.txt")], "eval": str(data_dir / "held_out.txt")},
                "methods": [{"name": "glmd"}],
                "training": training,
            },
            {
                "name": "task",
                "teacher": str(classifier_teacher_dir),
                "student": {"model": "stage:general", "layers": [1]},  # PD-style: cut the pre-trained student
                "task": {"name": "classification"},
                "data": {"train": [str(data_dir / "sst.tsv")], "eval": str(data_dir / "sst-dev.tsv")},
                "methods": [{"name": "kd", "temperature": 1.0}],
                "training": training,
            },
        ],
        "output": {"benchmark": False},
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    general = results["stages"][0]["metrics"]
    assert math.isfinite(general["student"]["eval"]["perplexity"]) and "teacher" in general
    assert results["metrics"]["student"]["eval"]["accuracy"] >= 0

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "student")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert len(tokenizer) == 39 == model.config.vocab_size  # 0.75 * 52
    assert model.config.num_hidden_layers == 1
    assert load_model(str(tmp_path / "student")).teacher_blocks == [3]  # block 1 of the general student's [0, 3]
    with torch.no_grad():
        assert model(**tokenizer(["the cat likes the ball ."], return_tensors="pt")).logits.shape == (1, 2)


def reverse_kl_gap(teacher, student, texts) -> float:
    inputs = teacher.tokenize(texts)
    with torch.no_grad():
        t = teacher(inputs, frozenset({"logits"})).logits
        s = student(inputs, frozenset({"logits"})).logits
    keep = predicting_positions(inputs["attention_mask"])
    return reverse_kl(s[keep], t[keep]).item()


def test_lm_recipe_with_reverse_kl(teachers, data_dir, tmp_path):
    teacher = teachers["lm"]
    held_out = sentences(48, seed=1)
    start, _ = build_student(teacher, StudentSpec(num_layers=1))
    recipe = {
        "name": "tiny-lm",
        "teacher": teacher.name,
        "student": {"num_layers": 1},
        "task": {"name": "lm"},
        "data": {"train": [str(data_dir / "train.txt")], "eval": str(data_dir / "held_out.txt")},
        "methods": [{"name": "reverse_kl"}],
        "training": {"batch_size": 16, "lr": 2e-3, "max_steps": 30, "save_every": 100, "log_every": 5},
        "output": {"benchmark": False},
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    assert student.kind == "causal_lm" and student.num_layers == 1
    assert reverse_kl_gap(teacher, student, held_out) < 0.8 * reverse_kl_gap(teacher, start, held_out)
    assert results["metrics"]["student"]["eval"]["perplexity"] > 1


def test_glmd_recipe_validates_with_its_data_paths_substituted(tmp_path, monkeypatch):
    path = RECIPES / "glmd.yaml"
    for relative in set(re.findall(r"\$\{KDFORGE_DATA:-[^}]*\}/([\w./-]+)", path.read_text())):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).touch()
    monkeypatch.setenv("KDFORGE_DATA", str(tmp_path))
    recipe = load_recipe(path)
    assert [s.name for s in recipe.stages] == ["teacher-mlm", "teacher", "general", "task"]
    general = recipe.stages[2]
    assert general.methods[0].name == "glmd" and general.student.vocabulary.keep == 0.5
    assert recipe.stages[3].student.model == "stage:general"


def test_an_encoder_without_an_mlm_head_becomes_a_glmd_teacher(embedding_teacher_dir, data_dir, tmp_path):
    """glmd.yaml's shape: a finetune stage trains the MLM head of a sentence encoder, which then teaches."""
    training = {"batch_size": 16, "lr": 2e-3, "max_steps": 8, "save_every": 100, "log_every": 4}
    data = {"train": [str(data_dir / "train.txt")], "eval": str(data_dir / "held_out.txt")}
    recipe = validate_recipe(
        {
            "name": "tiny-glmd-teacher",
            "task": {"name": "mlm"},
            "data": data,
            "training": training,
            "stages": [
                {"name": "teacher-mlm", "kind": "finetune", "student": str(embedding_teacher_dir)},
                {
                    "name": "general",
                    "teacher": "stage:teacher-mlm",
                    "student": {"num_layers": 2, "vocabulary": 0.5},
                    "methods": [{"name": "glmd"}],
                },
            ],
            "output": {"benchmark": False},
        }
    )
    assert [m.name for m in recipe.stages[0].methods] == ["mlm"]  # a finetune stage's default on task mlm
    results = kdforge.run(recipe, tmp_path, show=False)
    assert results["stages"][0]["metrics"]["student"]["eval"]["perplexity"] < 52  # the new head learned
    student = load_model(str(tmp_path / "student"))
    assert student.kind == "masked_lm" and len(student.tokenizer) == 26
