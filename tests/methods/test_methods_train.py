"""Each registered method, alone, brings a fresh tiny student measurably closer to its teacher."""

from __future__ import annotations

import pytest
import torch

from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import shape
from kdforge.engine.trainer import train
from kdforge.methods import METHODS, Pair
from kdforge.models import build_student, load_model
from kdforge.recipe import StudentSpec, TaskSpec, TrainingSpec
from kdforge.recipe.schema import DataSource
from kdforge.tasks import TASKS
from tests.conftest import labelled

# Arguments the tiny pair needs (hidden 32, 4 heads); the progress at which the loss is compared.
ARGS = {
    "minilmv2": {"relation_heads": 4},
    "tinybert": {"parts": ["embedding", "hidden", "attention", "prediction"]},
    "rail_kd": {"projection_size": 16},
    "continuation_kd": {"margin": 0.0},  # keep every sample: the default margin gates the whole tiny pair out
}
PROGRESS = {"sid": 0.5, "mobilebert": 0.5}
# Methods whose own loss follows a moving target are judged by the distance to the real teacher logits.
LOGIT_GAP = {"annealing_kd", "continuation_kd", "rl_kd"}
NO_TEACHER_GAP = {"ce"}  # trains on labels only: checked by its own test of fitting the labels
# methods of other tasks, each with its own training test
SENTENCE_ONLY = {"simcse", "mirror_bert", "rankcse"}  # test_sentence_methods.py
LANGUAGE_MODEL = {"mlm", "distilbert", "glmd", "forward_kl", "reverse_kl", "jsd", "tvd"}  # test_lm_methods.py
RANKING = {"margin_mse", "kl_listwise", "virt"}  # test_ranking_methods.py
OWN_FORWARD = {"theseus", "diito"}  # test_theseus_diito.py
SAMPLE_STORE = {"retrikt", "stored_kd"}  # train on a knowledge stage's store: tests/engine/test_retrikt.py
ELSEWHERE = NO_TEACHER_GAP | SENTENCE_ONLY | LANGUAGE_MODEL | RANKING | OWN_FORWARD | SAMPLE_STORE


def sharpened(folder, seed: int | None = None):
    """The tiny random classifier with a scaled-up head: confident, far-from-uniform predictions."""
    teacher = load_model(str(folder))
    with torch.no_grad():
        if seed is not None:  # a second, different teacher for the multi-teacher methods
            torch.manual_seed(seed)
            for p in teacher.hf.parameters():
                p.add_(0.02 * torch.randn_like(p))
        teacher.hf.classifier.weight.mul_(40)
    return teacher


@pytest.fixture(scope="module")
def sharp_teachers(classifier_teacher_dir):
    return [sharpened(classifier_teacher_dir), sharpened(classifier_teacher_dir, seed=5)]


def held_out_loss(method, teachers, student, batch) -> float:
    with torch.no_grad():
        student.eval()
        views = [t(inputs, method.teacher_needs()) for t, inputs in zip(teachers, batch.teacher_inputs, strict=True)]
        s_views = student(batch.student_inputs, method.student_needs())
        if method.registered_name in LOGIT_GAP:
            return float(torch.nn.functional.mse_loss(s_views.logits, views[0].logits))
        method.eval()
        loss = float(method(views if method.multi_teacher else views[0], s_views, batch))
        method.train()
        return loss


@pytest.mark.parametrize("name", [n for n in METHODS.names() if n not in ELSEWHERE])
def test_method_alone_lowers_its_teacher_student_gap(name, sharp_teachers, data_dir, tmp_path):
    cls = METHODS.get(name)
    teachers = sharp_teachers if cls.multi_teacher else sharp_teachers[:1]
    teacher = teachers[0]
    student, _ = build_student(teacher, StudentSpec(num_layers=2, init="fresh"))
    method = cls(cls.parse_args(ARGS.get(name, {})))
    shapes = tuple(shape(t) for t in teachers)
    method.setup(Pair(shapes[0], shape(student), same_tokenizer=True, teachers=shapes))
    task = TASKS.get("classification")(TaskSpec(name="classification"))
    dataset = task.train_dataset([DataSource.model_validate({"path": str(data_dir / "sst.tsv")})])

    rows = [{"text": t, "label": y, "index": i} for i, (t, y) in enumerate(labelled(32, seed=11))]
    batch = Collator(student, teachers)(rows)
    batch.step, batch.total_steps = int(PROGRESS.get(name, 0.5) * 100), 100
    before = held_out_loss(method, teachers, student, batch)

    training = TrainingSpec(max_steps=60, batch_size=16, lr=2e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(student, teachers, [method], [1.0], dataset, training, tmp_path, seed=0, fingerprint=name)
    after = held_out_loss(method, teachers, student, batch)

    assert after < 0.9 * before, (before, after)
