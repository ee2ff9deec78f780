"""Methods that follow a training schedule or draw per-step randomness: Annealing KD, Continuation
KD, RAIL-KD's layer draw, SID's stacked phases and MobileBERT's progressive transfer.

Expected values are computed here with plain Python (``math``) and explicit loops, never with
the torch call the implementation uses.
"""

from __future__ import annotations

import math

import pytest
import torch

from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.annealing_kd import annealing_factor, annealing_loss
from kdforge.methods.continuation_kd import continuation_loss, hard_label_share
from kdforge.methods.mobilebert import layer_weights
from kdforge.methods.rail_kd import random_layers
from kdforge.methods.sid import active_layers
from kdforge.models.views import Views


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(z - top) for z in row]
    return [e / sum(exps) for e in exps]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def batch(step: int = 0, total: int = 1, labels=None, epoch: int = 0, seed: int = 0) -> Batch:
    return Batch(
        student_inputs={},
        teacher_inputs=None,
        index=torch.arange(2),
        labels=labels,
        step=step,
        total_steps=total,
        epoch=epoch,
        seed=seed,
    )


def shape(kind="classifier", layers=4, hidden=8, heads=2, labels=2) -> ModelShape:
    return ModelShape(kind, layers, hidden, heads, labels, hidden)


def make(name: str, **raw):
    cls = METHODS.get(name)
    return cls(cls.parse_args(raw))


# ---------------------------------------------------------------- Annealing KD


def phi(temperature: int, tau_max: int) -> float:
    """Eq. 4 of arXiv 2104.07163: ``Phi(T) = 1 - (T - 1) / tau_max``."""
    return 1 - (temperature - 1) / tau_max


def test_annealing_factor_end_points():
    assert annealing_factor(0.0, 7) == pytest.approx(1 / 7)  # T = tau_max: softest target
    assert annealing_factor(0.99, 7) == pytest.approx(1.0)  # T = 1: the teacher's own logits
    assert annealing_factor(0.0, 1) == pytest.approx(1.0)  # tau_max 1 never anneals


def test_annealing_factor_is_monotone_and_takes_only_the_tau_max_values():
    allowed = [phi(t, 7) for t in range(1, 8)]
    values = [annealing_factor(i / 1000, 7) for i in range(1000)]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    for v in values:
        assert min(abs(v - a) for a in allowed) < 1e-12
    assert {round(v, 9) for v in values} == {round(a, 9) for a in allowed}


@pytest.mark.parametrize("tau_max", [3, 7, 10])
def test_annealing_factor_steps_in_tau_max_equal_chunks(tau_max):
    # Chunk k (progress in [k/tau, (k+1)/tau)) uses T = tau - k; probe the chunk middles and
    # points just inside either edge.
    for k in range(tau_max):
        expected = phi(tau_max - k, tau_max)
        for progress in (k / tau_max + 1e-9, (k + 0.5) / tau_max, (k + 1) / tau_max - 1e-9):
            assert annealing_factor(progress, tau_max) == pytest.approx(expected), (k, progress)


@pytest.mark.parametrize(("tau_max", "total"), [(7, 7), (7, 70), (10, 10)])
def test_annealing_factor_at_exact_chunk_edges_of_the_step_counter(tau_max, total):
    # Batch.progress is step / total_steps; step s lies in chunk s * tau // total (integer maths).
    for step in range(total):
        chunk = step * tau_max // total
        progress = batch(step, total).progress
        assert annealing_factor(progress, tau_max) == pytest.approx(phi(tau_max - chunk, tau_max)), step


def test_annealing_loss_by_hand():
    student = [[1.0, 2.0, -1.0], [0.0, 0.5, 3.0]]
    teacher = [[2.0, 2.0, 0.0], [4.0, -1.0, 3.0]]
    factor = 0.5
    squares = [
        (s - factor * t) ** 2 for rs, rt in zip(student, teacher, strict=True) for s, t in zip(rs, rt, strict=True)
    ]
    got = annealing_loss(torch.tensor(student), torch.tensor(teacher), factor)
    assert got.item() == pytest.approx(mean(squares), rel=1e-6)  # mean over batch and classes
    assert annealing_loss(torch.tensor(teacher) * 0.25, torch.tensor(teacher), 0.25).item() == 0.0


def test_annealing_kd_forward_follows_the_batch_progress():
    method = make("annealing_kd", max_temperature=4)
    method.setup(Pair(shape(), shape(), True))
    teacher = Views(torch.ones(2, 1), logits=torch.tensor([[4.0, -4.0], [8.0, 0.0]]))
    student = Views(torch.ones(2, 1), logits=torch.zeros(2, 2))
    # step 0 of 8: T = 4, Phi = 1/4 -> targets [[1, -1], [2, 0]]: mean square (1 + 1 + 4 + 0) / 4
    assert method(teacher, student, batch(0, 8)).item() == pytest.approx(1.5)
    # step 7 of 8: T = 1, Phi = 1 -> mean square (16 + 16 + 64 + 0) / 4
    assert method(teacher, student, batch(7, 8)).item() == pytest.approx(24.0)


# ---------------------------------------------------------------- Continuation KD


def hand_continuation(student, teacher, labels, factor, margin, psi):
    ce = mean([-math.log(softmax(s)[y]) for s, y in zip(student, labels, strict=True)])
    gated = []
    for s, t in zip(student, teacher, strict=True):
        m = mean([(a - factor * b) ** 2 for a, b in zip(s, t, strict=True)])
        gated.append(m if m > margin * factor else 0.0)
    return psi * ce + (1 - psi) * mean(gated)


CONT_STUDENT = [[2.0, 0.0], [0.0, 0.0]]
CONT_TEACHER = [[2.0, 0.0], [4.0, -4.0]]
CONT_LABELS = [0, 1]


def test_continuation_loss_gates_samples_within_the_margin_by_hand():
    # factor 0.5, margin 1: gate at 0.5.  Sample 0: z_S - 0.5 z_T = (1, 0) -> MSE 0.5, not above
    # the gate -> 0.  Sample 1: (-2, 2) -> MSE 4 counts.  Soft term = (0 + 4) / 2 = 2.
    # CE: sample 0 -log softmax(2, 0)[0] = log(1 + e^-2); sample 1 -log(1/2) = log 2.
    ce = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    args = (torch.tensor(CONT_STUDENT), torch.tensor(CONT_TEACHER), torch.tensor(CONT_LABELS))
    assert continuation_loss(*args, factor=0.5, margin=1.0, psi=0.25).item() == pytest.approx(
        0.25 * ce + 0.75 * 2.0, rel=1e-6
    )
    assert continuation_loss(*args, factor=0.5, margin=1.0, psi=1.0).item() == pytest.approx(ce, rel=1e-6)
    assert continuation_loss(*args, factor=0.5, margin=1.0, psi=0.0).item() == pytest.approx(2.0, rel=1e-6)
    # margin 0: every sample with any error counts -> (0.5 + 4) / 2
    assert continuation_loss(*args, factor=0.5, margin=0.0, psi=0.0).item() == pytest.approx(2.25, rel=1e-6)
    # a huge margin gates everything away
    assert continuation_loss(*args, factor=0.5, margin=100.0, psi=0.0).item() == 0.0


@pytest.mark.parametrize(("factor", "margin", "psi"), [(1.0, 0.5, 0.3), (0.2, 2.0, 0.0), (0.7, 0.1, 0.9)])
def test_continuation_loss_random_against_loops(factor, margin, psi):
    g = torch.Generator().manual_seed(int(factor * 10))
    student, teacher = torch.randn(5, 3, generator=g) * 2, torch.randn(5, 3, generator=g) * 2
    labels = torch.tensor([0, 2, 1, 1, 0])
    expected = hand_continuation(student.tolist(), teacher.tolist(), labels.tolist(), factor, margin, psi)
    got = continuation_loss(student, teacher, labels, factor, margin, psi)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_hard_label_share_rises_linearly_then_is_one():
    assert hard_label_share(0.0, 0.666, 1.333) == 0.0
    assert hard_label_share(0.5, 0.666, 1.333) == pytest.approx(0.5 / 1.333)
    assert hard_label_share(0.665, 0.666, 1.333) == pytest.approx(0.665 / 1.333)
    assert hard_label_share(0.666, 0.666, 1.333) == 1.0
    assert hard_label_share(0.9, 0.666, 1.333) == 1.0
    assert hard_label_share(0.6, 0.9, 0.5) == 1.0  # capped at 1 before the separation
    shares = [hard_label_share(i / 100, 0.666, 1.333) for i in range(100)]
    assert all(a <= b for a, b in zip(shares, shares[1:], strict=False))
    assert all(0.0 <= s <= 1.0 for s in shares)


def test_continuation_kd_forward_needs_labels_and_follows_progress():
    method = make("continuation_kd", max_temperature=2, margin=1.0, separation=0.5, denominator=1.0)
    method.setup(Pair(shape(), shape(), True))
    teacher = Views(torch.ones(2, 1), logits=torch.tensor(CONT_TEACHER))
    student = Views(torch.ones(2, 1), logits=torch.tensor(CONT_STUDENT))
    with pytest.raises(IncompatibleError, match="labels"):
        method(teacher, student, batch(0, 4))
    labels = torch.tensor(CONT_LABELS)
    # step 0 of 4: progress 0 -> T = 2, Phi = 1/2, psi = 0
    expected = hand_continuation(CONT_STUDENT, CONT_TEACHER, CONT_LABELS, 0.5, 1.0, 0.0)
    assert method(teacher, student, batch(0, 4, labels)).item() == pytest.approx(expected, rel=1e-6)
    # step 1 of 4: progress 0.25 -> still T = 2, psi = 0.25
    expected = hand_continuation(CONT_STUDENT, CONT_TEACHER, CONT_LABELS, 0.5, 1.0, 0.25)
    assert method(teacher, student, batch(1, 4, labels)).item() == pytest.approx(expected, rel=1e-6)
    # step 3 of 4: progress 0.75 -> T = 1, Phi = 1, psi = 1 (past the separation): CE only
    expected = hand_continuation(CONT_STUDENT, CONT_TEACHER, CONT_LABELS, 1.0, 1.0, 1.0)
    assert method(teacher, student, batch(3, 4, labels)).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- RAIL-KD: the layer draw


@pytest.mark.parametrize(("teacher", "count"), [(12, 5), (12, 11), (6, 2), (4, 1), (24, 11)])
def test_random_layers_sorted_distinct_and_within_1_to_n_minus_1(teacher, count):
    for seed in range(20):
        layers = random_layers(teacher, count, seed)
        assert len(layers) == count
        assert layers == sorted(layers)
        assert len(set(layers)) == count
        assert all(1 <= layer <= teacher - 1 for layer in layers)
        assert all(isinstance(layer, int) for layer in layers)


def test_random_layers_deterministic_per_seed_and_change_with_it():
    assert random_layers(12, 5, 3) == random_layers(12, 5, 3)
    draws = {tuple(random_layers(12, 5, seed)) for seed in range(10)}
    assert len(draws) > 3
    # every layer 1..N-1 can be drawn, the top one never
    seen = {layer for seed in range(200) for layer in random_layers(12, 3, seed)}
    assert seen == set(range(1, 12))


def test_random_layers_taking_all_intermediate_layers():
    assert random_layers(7, 6, 0) == [1, 2, 3, 4, 5, 6]


def test_random_layers_do_not_disturb_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_layers(12, 5, 99)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- SID: stacked phases


def test_active_layers_two_student_layers():
    assert active_layers(0.0, 2) == 1
    assert active_layers(0.4, 2) == 2
    assert active_layers(0.8, 2) == 0  # the last phase: output only


@pytest.mark.parametrize("student", [1, 2, 3, 4, 6, 12])
def test_active_layers_m_plus_one_equal_phases(student):
    phases = student + 1
    for k in range(phases):
        expected = k + 1 if k + 1 <= student else 0
        for progress in (k / phases + 1e-9, (k + 0.5) / phases, (k + 1) / phases - 1e-9):
            assert active_layers(progress, student) == expected, (k, progress)
        # and at the exact step counter boundaries
        for total in (phases, 3 * phases):
            step = k * total // phases
            assert active_layers(batch(step, total).progress, student) == expected, (k, total)


def sid_views(seed: int, mask: torch.Tensor) -> Views:
    g = torch.Generator().manual_seed(seed)
    hidden = tuple(torch.randn(2, 3, 4, generator=g) for _ in range(3))
    q = tuple(torch.randn(2, 2, 3, 2, generator=g) for _ in range(2))
    k = tuple(torch.randn(2, 2, 3, 2, generator=g) for _ in range(2))
    return Views(mask, hidden_states=hidden, queries=q, keys=k, values=k)


def test_sid_forward_distils_one_more_layer_per_phase_and_nothing_in_the_last():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    method = make("sid")
    method.setup(Pair(shape(layers=2, hidden=4), shape(layers=2, hidden=4), True))
    teacher, student = sid_views(1, mask), sid_views(2, mask)
    # phase 3 of 3 (progress >= 2/3): the method contributes 0
    assert method(teacher, student, batch(2, 3)).item() == 0.0
    phase1 = method(teacher, student, batch(0, 3)).item()
    phase2 = method(teacher, student, batch(1, 3)).item()
    assert 0 < phase1 < phase2
    # phase 1 does not look at layer 2; phase 2 does
    changed = Views(
        mask,
        hidden_states=(*student.hidden_states[:2], student.hidden_states[2] * -3),
        queries=(student.queries[0], student.queries[1] * 5),
        keys=student.keys,
        values=student.values,
    )
    assert method(teacher, changed, batch(0, 3)).item() == pytest.approx(phase1, rel=1e-6)
    assert method(teacher, changed, batch(1, 3)).item() != pytest.approx(phase2, rel=1e-3)
    # identical views give 0 in every phase
    for step in range(3):
        assert method(student, student, batch(step, 3)).item() == pytest.approx(0.0, abs=1e-6)


def test_phase_at_exact_edges_for_deep_students():
    assert active_layers(batch(15, 22).progress, 21) == 16
    weights = layer_weights(batch(15, 22).progress, 22, True, 0.1)
    assert weights.index(1.0) + 1 == 16


# ---------------------------------------------------------------- MobileBERT: progressive weights


def test_layer_weights_not_progressive_is_all_ones():
    assert layer_weights(0.0, 4, False, 0.1) == [1.0, 1.0, 1.0, 1.0]
    assert layer_weights(0.9, 4, False, 0.1) == [1.0, 1.0, 1.0, 1.0]


def test_layer_weights_progressive_phases():
    assert layer_weights(0.0, 3, True, 0.1) == [1.0, 0.0, 0.0]
    assert layer_weights(0.4, 3, True, 0.1) == [0.1, 1.0, 0.0]
    assert layer_weights(0.7, 3, True, 0.1) == [0.1, 0.1, 1.0]
    assert layer_weights(0.999, 3, True, 0.1) == [0.1, 0.1, 1.0]
    assert layer_weights(0.5, 4, True, 0.0) == [0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("layers", [1, 2, 4, 6, 12, 24])
def test_layer_weights_one_phase_per_layer(layers):
    for phase in range(1, layers + 1):
        expected = [1.0 if i == phase else 0.25 if i < phase else 0.0 for i in range(1, layers + 1)]
        for progress in ((phase - 1) / layers + 1e-9, (phase - 0.5) / layers, phase / layers - 1e-9):
            assert layer_weights(progress, layers, True, 0.25) == expected
        for total in (layers, 5 * layers):
            step = (phase - 1) * total // layers
            assert layer_weights(batch(step, total).progress, layers, True, 0.25) == expected


def test_mobilebert_forward_progressive_ignores_later_layers():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    method = make("mobilebert", progressive=True, earlier_weight=0.1)
    method.setup(Pair(shape(layers=2, hidden=4), shape(layers=2, hidden=4), True))
    teacher, student = sid_views(3, mask), sid_views(4, mask)
    first = method(teacher, student, batch(0, 2)).item()
    second = method(teacher, student, batch(1, 2)).item()
    changed = Views(
        mask,
        hidden_states=(*student.hidden_states[:2], student.hidden_states[2].flip(-1)),
        queries=(student.queries[0], student.queries[1].flip(-1)),
        keys=student.keys,
        values=student.values,
    )
    assert method(teacher, changed, batch(0, 2)).item() == pytest.approx(first, rel=1e-6)
    assert method(teacher, changed, batch(1, 2)).item() != pytest.approx(second, rel=1e-3)
    # phase 2 = 0.1 * layer-1 terms + layer-2 terms; not progressive = layer 1 + layer 2
    full = make("mobilebert")
    full.setup(Pair(shape(layers=2, hidden=4), shape(layers=2, hidden=4), True))
    both = full(teacher, student, batch(0, 2)).item()
    assert second == pytest.approx(0.1 * first + (both - first), rel=1e-5)
