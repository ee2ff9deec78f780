"""Theseus and DIITO: the methods that run the models themselves (hybrid blocks, interchange interventions)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

import kdforge
from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import shape
from kdforge.engine.trainer import train
from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.ce import CE, ce_loss
from kdforge.methods.diito import interchange, interchange_spans, rolled, span_masks
from kdforge.methods.kd import kd_loss
from kdforge.methods.theseus import draw_successors, predecessor_groups, replacement_rate
from kdforge.models import build_student, load_model
from kdforge.models.text_model import TextModel
from kdforge.recipe import StudentSpec, TaskSpec, TrainingSpec, validate_recipe
from kdforge.recipe.schema import DataSource
from kdforge.schedules import Schedule
from kdforge.tasks import TASKS
from tests.conftest import bert_config, classification_recipe, labelled, make_tokenizer


def make(name: str, **raw):
    cls = METHODS.get(name)
    return cls(cls.parse_args(raw))


def classifier(layers: int = 4, seed: int = 0, hidden: int = 32) -> TextModel:
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    hf = BertForSequenceClassification(bert_config(layers=layers, hidden=hidden, num_labels=2)).eval()
    return TextModel(hf, make_tokenizer(), "classifier")


def sharp(model: TextModel) -> TextModel:
    """Confident, far-from-uniform predictions: a teacher worth distilling."""
    with torch.no_grad():
        model.hf.classifier.weight.mul_(40)
    return model


def labelled_batch(student: TextModel, teachers: list[TextModel], n: int = 16, seed: int = 11) -> Batch:
    rows = [{"text": t, "label": y, "index": i} for i, (t, y) in enumerate(labelled(n, seed=seed))]
    return Collator(student, teachers)(rows)


def bound(name: str, teacher: TextModel, student: TextModel, **raw):
    method = make(name, **raw)
    method.setup(Pair(shape(teacher), shape(student), same_tokenizer=True))
    method.bind(student, [teacher])
    return method


def sst(data_dir):
    task = TASKS.get("classification")(TaskSpec(name="classification"))
    return task.train_dataset([DataSource.model_validate({"path": str(data_dir / "sst.tsv")})])


def shape_of(layers: int, hidden: int = 32, kind: str = "classifier", blocks=None) -> ModelShape:
    return ModelShape(kind, layers, hidden, 4, 2, hidden, teacher_blocks=blocks, output_size=2)


# ================================================================ Theseus: pure pieces


def test_replacement_rate_follows_the_linear_curriculum_and_stops_at_one():
    # p_t = min(1, k t + b)
    assert replacement_rate(0.3, 0.001, step=0, progress=0.0) == pytest.approx(0.3)
    assert replacement_rate(0.3, 0.001, step=100, progress=0.5) == pytest.approx(0.4)
    assert replacement_rate(0.3, 0.001, step=1000, progress=0.9) == 1.0
    # without k: the rate (a number or a schedule over the stage), clamped to [0, 1]
    default = make("theseus").args.rate
    assert replacement_rate(default, None, 0, 0.0) == pytest.approx(0.3)
    assert replacement_rate(default, None, 0, 0.5) == pytest.approx(0.3 + 1.05 * 0.5)
    assert replacement_rate(default, None, 0, 2 / 3) == pytest.approx(1.0)
    assert replacement_rate(default, None, 0, 0.9) == 1.0
    assert replacement_rate(0.5, None, 7, 0.2) == 0.5
    assert replacement_rate(Schedule(start=-0.5, end=0.5), None, 0, 0.0) == 0.0


def test_successors_are_drawn_per_module_with_probability_p():
    g = torch.Generator().manual_seed(0)
    assert draw_successors(6, 0.0, g) == [False] * 6
    assert draw_successors(6, 1.0, g) == [True] * 6
    draws = [x for _ in range(2000) for x in draw_successors(6, 0.3, g)]
    assert sum(draws) / len(draws) == pytest.approx(0.3, abs=0.02)
    again = [draw_successors(6, 0.5, torch.Generator().manual_seed(s)) for s in (1, 1)]
    assert again[0] == again[1]


def test_predecessor_groups_are_consecutive_blocks():
    assert predecessor_groups(12, 6) == [
        range(0, 2),
        range(2, 4),
        range(4, 6),
        range(6, 8),
        range(8, 10),
        range(10, 12),
    ]
    assert predecessor_groups(4, 2) == [range(0, 2), range(2, 4)]
    assert predecessor_groups(6, 1) == [range(0, 6)]


# ================================================================ Theseus: the hybrid model


@pytest.fixture(scope="module")
def pair_of_models():
    teacher = classifier(4, seed=0)
    student, _ = build_student(teacher, StudentSpec(num_layers=2))
    student.eval()
    with torch.no_grad():  # make the student differ from the blocks it was cut from
        for p in student.hf.bert.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return teacher, student


def test_hybrid_with_no_successor_is_exactly_the_teacher(pair_of_models):
    teacher, student = pair_of_models
    method = bound("theseus", teacher, student)
    batch = labelled_batch(student, [teacher])
    with torch.no_grad():
        hybrid = method.hybrid_logits(batch.student_inputs, [False, False])
        expected = teacher(batch.student_inputs).logits
    assert torch.equal(hybrid, expected)


def test_hybrid_with_every_successor_is_exactly_the_student(pair_of_models):
    teacher, student = pair_of_models
    method = bound("theseus", teacher, student)
    batch = labelled_batch(student, [teacher])
    with torch.no_grad():
        hybrid = method.hybrid_logits(batch.student_inputs, [True, True])
        expected = student(batch.student_inputs).logits
    assert torch.equal(hybrid, expected)
    assert not torch.equal(expected, teacher(batch.student_inputs).logits)


def test_a_mixed_hybrid_composes_student_and_teacher_blocks(pair_of_models):
    teacher, student = pair_of_models
    method = bound("theseus", teacher, student)
    ids = torch.tensor([[2, 10, 20, 30, 3], [2, 11, 21, 31, 3]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    s, t = student.hf, teacher.hf
    with torch.no_grad():
        h = s.bert.embeddings(input_ids=ids, token_type_ids=inputs["token_type_ids"])
        h = s.bert.encoder.layer[0](h, None)  # successor 0
        h = t.bert.encoder.layer[2](h, None)  # predecessor 1: teacher blocks 2 and 3
        h = t.bert.encoder.layer[3](h, None)
        expected = s.classifier(s.bert.pooler(h))
        got = method.hybrid_logits(inputs, [True, False])
    assert_close(got, expected)


@pytest.mark.parametrize("train_what", ["successors", "student"])
def test_only_the_used_successors_learn_unless_the_whole_student_trains(train_what):
    teacher = classifier(4, seed=0)
    student, _ = build_student(teacher, StudentSpec(num_layers=2))
    method = bound("theseus", teacher, student, train=train_what)
    batch = labelled_batch(student, [teacher])
    ce_loss(method.hybrid_logits(batch.student_inputs, [True, False]), batch.labels).backward()

    def has_grad(module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert has_grad(student.hf.bert.encoder.layer[0])
    assert not has_grad(student.hf.bert.encoder.layer[1])  # replaced by its predecessor this step
    assert not any(p.grad is not None for p in teacher.hf.parameters())
    shared = [has_grad(student.hf.bert.embeddings), has_grad(student.hf.classifier)]
    assert shared == ([True, True] if train_what == "student" else [False, False])


def test_outside_training_the_loss_is_the_plain_students(pair_of_models):
    teacher, student = pair_of_models
    method = bound("theseus", teacher, student, rate=0.0).eval()
    batch = labelled_batch(student, [teacher])
    with torch.no_grad():
        views = student(batch.student_inputs)
        got = method(None, views, batch)
    assert got.item() == pytest.approx(ce_loss(views.logits, batch.labels).item(), rel=1e-6)
    method.train()
    with torch.no_grad():
        at_zero = method(None, views, batch)  # p = 0: the whole teacher runs
    assert at_zero.item() == pytest.approx(ce_loss(teacher(batch.student_inputs).logits, batch.labels).item())


def test_theseus_args_and_pairs_that_do_not_fit():
    theseus = METHODS.get("theseus")
    with pytest.raises(ValueError, match="must be a number"):
        theseus.parse_args({"k": 0.001, "rate": {"schedule": "linear", "start": 0.3, "end": 1.0}})
    with pytest.raises(ValueError, match="probability"):
        theseus.parse_args({"rate": 1.5})
    cut = (0, 3)
    with pytest.raises(IncompatibleError, match="widths"):
        make("theseus").setup(Pair(shape_of(4), shape_of(2, hidden=16, blocks=cut), True))
    with pytest.raises(IncompatibleError, match="not divisible by 3"):
        make("theseus").setup(Pair(shape_of(4), shape_of(3, blocks=(0, 1, 3)), True))
    with pytest.raises(IncompatibleError, match="classifier"):
        make("theseus").setup(Pair(shape_of(4, kind="masked_lm"), shape_of(2, kind="masked_lm", blocks=cut), True))
    with pytest.raises(IncompatibleError, match="train: student"):
        make("theseus").setup(Pair(shape_of(4), shape_of(2), True))
    make("theseus", train="student").setup(Pair(shape_of(4), shape_of(2), True))
    with pytest.raises(IncompatibleError, match="needs a teacher"):
        make("theseus").setup(Pair(None, shape_of(2, blocks=cut), True))


@pytest.fixture(scope="module")
def fitted_teacher(classifier_teacher_dir, data_dir, tmp_path_factory):
    """The tiny classifier fine-tuned on the synthetic labels: a teacher that is good at the task."""
    teacher = load_model(str(classifier_teacher_dir))
    training = TrainingSpec(max_steps=120, batch_size=16, lr=3e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(teacher, [], [CE()], [1.0], sst(data_dir), training, tmp_path_factory.mktemp("fit"), 0, "fit")
    return teacher.eval()


def test_theseus_lowers_the_students_task_loss(fitted_teacher, data_dir, tmp_path):
    student, _ = build_student(fitted_teacher, StudentSpec(num_layers=2))
    torch.manual_seed(0)
    with torch.no_grad():  # successors far from the blocks they were cut from: the student is poor at the task
        for p in student.hf.bert.encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    method = make("theseus")
    method.setup(Pair(shape(fitted_teacher), shape(student), True))
    held_out = labelled_batch(student, [fitted_teacher], n=32, seed=12)

    def task_loss() -> float:
        student.eval()
        with torch.no_grad():
            return ce_loss(student(held_out.student_inputs).logits, held_out.labels).item()

    before = task_loss()
    teacher_loss = ce_loss(fitted_teacher(held_out.student_inputs).logits, held_out.labels).item()
    assert teacher_loss < before  # the teacher fits the labels better than the cut student
    training = TrainingSpec(max_steps=60, batch_size=16, lr=2e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(student, [fitted_teacher], [method], [1.0], sst(data_dir), training, tmp_path, seed=0, fingerprint="theseus")
    after = task_loss()
    assert after < 0.3 * before, (before, after, teacher_loss)


def test_theseus_recipe_runs_and_checkpoints_hold_the_student_once(classifier_teacher_dir, data_dir, tmp_path):
    recipe = classification_recipe(classifier_teacher_dir, data_dir, methods=[{"name": "theseus"}], max_steps=8)
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert "accuracy" in results["metrics"]["student"]["eval"]
    student = load_model(str(tmp_path / "student"))
    assert student.num_layers == 2

    saved = sorted((tmp_path / "stages").glob("*/checkpoints/step-*/model.safetensors"))
    assert saved
    keys = list(load_file(str(saved[-1])))
    assert len(keys) == len(set(keys))
    assert all(k.startswith("student.") for k in keys), [k for k in keys if not k.startswith("student.")]
    assert len(keys) == len(student.hf.state_dict())  # no teacher blocks, no second copy of the student


# ================================================================ DIITO: pure pieces


def test_interchange_sets_the_marked_positions_in_order():
    base = torch.zeros(2, 4, 1)
    source = torch.arange(8, dtype=torch.float).view(2, 4, 1) + 1
    base_at = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    source_at = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    got = interchange(base, source, base_at, source_at)
    assert got[..., 0].tolist() == [[0.0, 1.0, 4.0, 0.0], [7.0, 0.0, 0.0, 0.0]]


def test_the_source_batch_is_the_batch_rolled_by_one_example():
    x = torch.tensor([[1], [2], [3]])
    assert rolled(x).tolist() == [[2], [3], [1]]  # cat([x[1:], x[:1]])


def test_interchange_spans_cover_a_proportion_of_the_shorter_sequence():
    g = torch.Generator().manual_seed(0)
    spans = interchange_spans([10, 5, 20, 3], [5, 10, 20, 3], 0.3, None, g)
    assert [c for _, _, c in spans] == [1, 1, 6, 0]  # int(min(len, len_source) * 0.3)
    for (start, source_start, count), base, source in zip(spans, [10, 5, 20, 3], [5, 10, 20, 3], strict=True):
        assert 0 <= start <= base - count
        assert 0 <= source_start <= source - count
    capped = interchange_spans([20], [20], 0.3, 4, torch.Generator().manual_seed(0))
    assert capped[0][2] == 4
    again = interchange_spans([10, 5, 20, 3], [5, 10, 20, 3], 0.3, None, torch.Generator().manual_seed(0))
    assert again == spans


def test_span_masks_count_real_tokens_whatever_the_padding_side():
    right = torch.tensor([[1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    base_at, source_at = span_masks([(1, 0, 2)], right, left)
    assert base_at.long().tolist() == [[0, 1, 1, 0, 0]]
    assert source_at.long().tolist() == [[0, 0, 1, 1, 0]]


# ================================================================ DIITO: the method


def test_diito_of_identical_models_is_zero():
    teacher = sharp(classifier(4, seed=3))
    student = copy.deepcopy(teacher)
    method = bound("diito", teacher, student)
    for step in range(4):  # several layers and spans
        batch = labelled_batch(student, [teacher])
        batch.step = step
        with torch.no_grad():
            views_t = teacher(batch.teacher_inputs[0], method.teacher_needs())
            views_s = student(batch.student_inputs, method.student_needs())
            assert method(views_t, views_s, batch).item() == pytest.approx(0.0, abs=1e-6)


def test_the_intervention_steers_the_output_and_an_empty_one_does_not():
    teacher = sharp(classifier(4, seed=3))
    student, _ = build_student(teacher, StudentSpec(num_layers=2))
    method = bound("diito", teacher, student, layer=1)
    assert method.layer_map == {1: 1, 2: 4}  # student blocks 1, 2 were cut from teacher blocks 0 and 3
    batch = labelled_batch(student, [teacher], n=4)
    mask = batch.student_inputs["attention_mask"]
    spans = [(0, 0, min(a, b)) for a, b in zip(mask.sum(-1).tolist(), rolled(mask.sum(-1)).tolist(), strict=True)]
    base_at, source_at = span_masks(spans, mask, rolled(mask))
    with torch.no_grad():
        plain = teacher(batch.teacher_inputs[0], frozenset({"hidden_states"}))
        source = rolled(plain.hidden_states[1])
        cf = method._counterfactual(teacher, batch.teacher_inputs[0], 1, source, base_at, source_at)
        nothing = torch.zeros_like(base_at)
        same = method._counterfactual(teacher, batch.teacher_inputs[0], 1, source, nothing, nothing)
    assert not torch.allclose(cf, plain.logits)  # the other example's states steer the prediction
    assert_close(same, plain.logits)


def test_the_loss_is_kd_between_the_counterfactual_outputs():
    teacher = sharp(classifier(4, seed=3))
    student, _ = build_student(teacher, StudentSpec(num_layers=2))
    student.eval()
    method = bound("diito", teacher, student, layer=1, temperature=3.0)
    batch = labelled_batch(student, [teacher], n=6)
    batch.step, batch.seed = 5, 1
    with torch.no_grad():
        views_t = teacher(batch.teacher_inputs[0], method.teacher_needs() | {"logits"})
        views_s = student(batch.student_inputs, method.student_needs())
        got = method(views_t, views_s, batch).item()

        # the same draw by hand: the layer is fixed, so the generator only places the spans
        mask = batch.student_inputs["attention_mask"]
        lengths = mask.sum(-1).tolist()
        generator = torch.Generator().manual_seed(1 * 1_000_003 + 5)
        spans = interchange_spans(lengths, lengths[1:] + lengths[:1], 0.3, None, generator)
        base_at, source_at = span_masks(spans, mask, rolled(mask))
        inputs = batch.student_inputs
        t_cf = method._counterfactual(teacher, inputs, 1, rolled(views_t.hidden_states[1]), base_at, source_at)
        s_cf = method._counterfactual(student, inputs, 1, rolled(views_s.hidden_states[1]), base_at, source_at)
    assert got == pytest.approx(kd_loss(s_cf, t_cf, 3.0).item(), rel=1e-5)
    assert got != pytest.approx(kd_loss(views_s.logits, views_t.logits, 3.0).item(), rel=1e-3)


def test_diito_works_on_masked_lm_logits():
    from transformers import BertForMaskedLM

    torch.manual_seed(4)
    hf = BertForMaskedLM(bert_config(layers=2)).eval()
    teacher = TextModel(hf, make_tokenizer(), "masked_lm")
    student = copy.deepcopy(teacher)
    batch = labelled_batch(student, [teacher], n=4)
    batch.labels = batch.student_inputs["input_ids"].masked_fill(batch.student_inputs["attention_mask"] == 0, -100)
    for positions in ("all", "masked"):
        method = bound("diito", teacher, student, positions=positions)
        with torch.no_grad():
            views = teacher(batch.student_inputs, method.needs)
            assert method(views, views, batch).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in student.hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
        views_s = student(batch.student_inputs, method.needs)
        assert method(views, views_s, batch).item() > 0


def test_diito_pairs_that_do_not_fit():
    with pytest.raises(IncompatibleError, match="tokenize"):
        make("diito").setup(Pair(shape_of(4), shape_of(2), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="not a student block"):
        make("diito", layer=3).setup(Pair(shape_of(4), shape_of(2), True))
    with pytest.raises(IncompatibleError, match="diito"):
        make("diito").setup(Pair(None, shape_of(2), True))


def test_diito_lowers_its_teacher_student_gap(data_dir, tmp_path):
    teacher = sharp(classifier(4, seed=5))
    student, _ = build_student(teacher, StudentSpec(num_layers=2, init="fresh"))
    method = make("diito")
    method.setup(Pair(shape(teacher), shape(student), True))
    held_out = labelled_batch(student, [teacher], n=32, seed=13)

    def gap() -> float:
        student.eval()
        total = 0.0
        for step in range(4):  # fixed layers and spans: the same counterfactuals before and after
            held_out.step = step
            with torch.no_grad():
                views_t = teacher(held_out.teacher_inputs[0], method.teacher_needs())
                views_s = student(held_out.student_inputs, method.student_needs())
                total += method(views_t, views_s, held_out).item()
        return total

    training = TrainingSpec(max_steps=60, batch_size=16, lr=2e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    method.bind(student, [teacher])
    before = gap()
    train(student, [teacher], [method], [1.0], sst(data_dir), training, tmp_path, seed=0, fingerprint="diito")
    after = gap()
    assert after < 0.5 * before, (before, after)


def test_diito_with_kd_recipe_runs(classifier_teacher_dir, data_dir, tmp_path):
    methods = [{"name": "diito", "weight": 0.5, "temperature": 2.0}, {"name": "kd", "temperature": 2.0}]
    recipe = classification_recipe(classifier_teacher_dir, data_dir, methods=methods, max_steps=8)
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert "accuracy" in results["metrics"]["student"]["eval"]
    assert results["training"]["steps"] == 8
    assert load_model(str(tmp_path / "student")).num_layers == 2
