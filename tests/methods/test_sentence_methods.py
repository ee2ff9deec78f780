"""Contrastive sentence-embedding methods: hand-computed losses and short runs on a tiny encoder."""

from __future__ import annotations

import math

import pytest
import torch

from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import shape
from kdforge.engine.trainer import train
from kdforge.methods import METHODS, Pair
from kdforge.methods.contrastive import cosine_matrix, info_nce, nt_xent
from kdforge.methods.mirror_bert import mask_random_span
from kdforge.methods.rankcse import jensen_shannon, listmle, listnet
from kdforge.models import build_student, load_model
from kdforge.recipe import StudentSpec, TaskSpec, TrainingSpec
from kdforge.recipe.schema import DataSource
from kdforge.tasks import TASKS
from tests.conftest import sentences


def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    # row 0: cos = [1, 1/sqrt2]; row 1: cos = [0, 1/sqrt2]; positives on the diagonal
    r = 1 / math.sqrt(2)
    row0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(r / tau)))
    row1 = -math.log(math.exp(r / tau) / (math.exp(0) + math.exp(r / tau)))
    assert info_nce(a, b, tau).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_nt_xent_counts_negatives_from_both_views():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 1.0
    # identical views: for each of the 4 anchors, the positive has cos 1; the two others cos 0 and 0... by hand:
    # anchor a0: candidates (excluding itself) = a1 (0), b0 (1, positive), b1 (0)
    expected = -math.log(math.e / (math.e + 2))
    assert nt_xent(a, a.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_jensen_shannon_is_zero_for_identical_and_symmetric():
    p = torch.tensor([[1.0, 2.0, 0.5]])
    q = torch.tensor([[0.0, 1.0, 3.0]])
    assert jensen_shannon(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon(p, q).item() == pytest.approx(jensen_shannon(q, p).item(), rel=1e-6)
    P, Q = torch.softmax(p, -1)[0].tolist(), torch.softmax(q, -1)[0].tolist()
    M = [(x + y) / 2 for x, y in zip(P, Q, strict=True)]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))  # noqa: E731
    assert jensen_shannon(p, q).item() == pytest.approx((kl(P, M) + kl(Q, M)) / 2, rel=1e-5)


def test_listnet_and_listmle_by_hand():
    # 3 sentences: off-diagonal lists have 2 entries each
    teacher = torch.tensor([[9.0, 2.0, 0.0], [1.0, 9.0, 0.0], [0.0, 3.0, 9.0]])
    student = torch.tensor([[9.0, 0.0, 1.0], [0.0, 9.0, 2.0], [1.0, 1.0, 9.0]])

    def softmax(xs):
        e = [math.exp(x) for x in xs]
        return [x / sum(e) for x in e]

    rows_t = [[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]]
    rows_s = [[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]]
    expected = (
        -sum(
            sum(p * math.log(q) for p, q in zip(softmax(t), softmax(s), strict=True))
            for t, s in zip(rows_t, rows_s, strict=True)
        )
        / 3
    )
    assert listnet(student, teacher).item() == pytest.approx(expected, rel=1e-5)

    def plackett_luce_nll(t, s):
        order = sorted(range(len(t)), key=lambda i: -t[i])
        ranked = [s[i] for i in order]
        return sum(math.log(sum(math.exp(x) for x in ranked[k:])) - ranked[k] for k in range(len(ranked)))

    expected_mle = sum(plackett_luce_nll(t, s) for t, s in zip(rows_t, rows_s, strict=True)) / 3
    assert listmle(student, teacher).item() == pytest.approx(expected_mle, rel=1e-5)


def test_span_masking_masks_real_non_special_tokens_only():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    special = torch.tensor([[1, 0, 0, 0, 0, 1, 1]])
    masked = mask_random_span(ids, mask, span=2, mask_id=4, special=special, seed=0)
    changed = (masked != ids).nonzero()[:, 1].tolist()
    assert len(changed) == 2 and changed[1] - changed[0] == 1 and all(1 <= c <= 4 for c in changed)
    assert masked[0, 0] == 2 and masked[0, 5] == 3 and masked[0, 6] == 0
    assert torch.equal(masked, mask_random_span(ids, mask, 2, 4, special, seed=0))


@pytest.mark.parametrize("name", ["simcse", "mirror_bert", "rankcse"])
def test_contrastive_method_alone_lowers_its_loss(name, embedding_teacher_dir, data_dir, tmp_path):
    teacher = load_model(str(embedding_teacher_dir))
    student, _ = build_student(teacher, StudentSpec(num_layers=2, init="fresh"))
    cls = METHODS.get(name)
    # on a tiny random teacher, SimCSE's own term outweighs the ranking term unless gamma is large
    method = cls(cls.parse_args({"gamma": 10.0} if name == "rankcse" else {}))
    teachers = [teacher] if cls.multi_teacher else []
    shapes = tuple(shape(t) for t in teachers)
    method.setup(Pair(shapes[0] if shapes else None, shape(student), True, teachers=shapes))
    task = TASKS.get("sts")(TaskSpec(name="sts"))
    dataset = task.train_dataset([DataSource.model_validate({"path": str(data_dir / "train.txt")})])
    rows = [{"text": t, "index": i} for i, t in enumerate(sentences(32, seed=12))]
    batch = Collator(student, teachers)(rows)

    def loss() -> float:
        torch.manual_seed(0)  # the same dropout masks before and after
        student.train()
        with torch.no_grad():
            views = student(batch.student_inputs, method.student_needs())
            second = student(method.augment(batch.student_inputs, batch, student.tokenizer), method.student_needs())
            views.second = second
            t_views = [t(i, method.teacher_needs()) for t, i in zip(teachers, batch.teacher_inputs, strict=True)]
            if name == "rankcse":  # the teacher-student gap: the listwise ranking term alone
                h1, h2, t = views.embedding, second.embedding, t_views[0].embedding
                return float(listnet(cosine_matrix(h1, h2) / 0.025, cosine_matrix(t, t) / 0.05))
            return float(method(t_views, views, batch))

    before = loss()
    training = TrainingSpec(max_steps=60, batch_size=16, lr=2e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(student, teachers, [method], [1.0], dataset, training, tmp_path, seed=0, fingerprint=name)
    after = loss()
    assert after < 0.9 * before, (before, after)
