"""MGSKD's relations (pairs, triplet angles, spans, samples) against values worked out by hand.

Expected values come from plain Python over nested lists (``math`` only), following the formulas
in the ``mgskd`` docstring, so a wrong scale, reduction, mask or granularity shows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.mgskd import (
    pair_loss,
    pair_relations,
    relation_heads,
    sample_angles,
    sample_loss,
    select_triplets,
    span_representations,
    structure_loss,
    triplet_angles,
    triplet_loss,
)
from kdforge.models.views import Views

HUGE = 1.0e6  # what padded positions hold: must not leak into any masked loss


def randn(*shape_: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape_, generator=torch.Generator().manual_seed(seed))


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def unit(a: list[float]) -> list[float]:
    n = math.sqrt(dot(a, a))
    return [x / n for x in a] if n > 0 else [0.0 for _ in a]


def sub(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def smooth_l1(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def heads_of(v: list[float], heads: int) -> list[list[float]]:
    size = len(v) // heads
    return [v[h * size : (h + 1) * size] for h in range(heads)]


def hand_pair_loss(t: list, s: list, mask: list[list[int]], heads: int) -> float:
    total, count = 0.0, 0
    for b, row in enumerate(mask):
        real = [i for i, m in enumerate(row) if m]
        for i in real:
            for j in real:
                for h in range(heads):
                    ti, tj = heads_of(t[b][i], heads)[h], heads_of(t[b][j], heads)[h]
                    si, sj = heads_of(s[b][i], heads)[h], heads_of(s[b][j], heads)[h]
                    scale = math.sqrt(len(ti))
                    total += (dot(si, sj) / scale - dot(ti, tj) / scale) ** 2
                    count += 1
    return total / count


def angle(x: list, i: int, j: int, k: int) -> float:
    return dot(unit(sub(x[j], x[i])), unit(sub(x[k], x[i])))


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` ``[B, T, d]`` with HUGE (alternating sign) at the padded positions."""
    out = x.clone()
    for b in range(mask.size(0)):
        for t in range(mask.size(1)):
            if not mask[b, t]:
                out[b, t] = HUGE if (b + t) % 2 == 0 else -HUGE
    return out


MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


# ---------------------------------------------------------------- pair-wise relations


def test_pair_relations_by_hand_per_relation_head():
    x = torch.tensor([[[1.0, 2.0, 0.0, 1.0], [3.0, -1.0, 2.0, 2.0]]])  # [1, 2, 4]
    got = pair_relations(x, heads=2)
    assert got.shape == (1, 2, 2, 2)
    # head 0 uses dims 0-1, head 1 dims 2-3, each scaled by 1/sqrt(2)
    r = 1 / math.sqrt(2)
    assert_close(got[0, 0], torch.tensor([[5.0, 1.0], [1.0, 10.0]]) * r)
    assert_close(got[0, 1], torch.tensor([[1.0, 2.0], [2.0, 8.0]]) * r)


@pytest.mark.parametrize("heads", [1, 2])
def test_pair_loss_is_the_mean_squared_error_over_real_pairs_and_heads(heads):
    t, s = randn(2, 4, 4, seed=1), randn(2, 4, 4, seed=2)
    expected = hand_pair_loss(t.tolist(), s.tolist(), MASK.tolist(), heads)
    got = pair_loss(masked(t, MASK), masked(s, MASK), MASK, heads)
    assert got.item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- triplet-wise angles


def test_triplet_angles_by_hand():
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])
    anchors = torch.tensor([[0, 3]])
    neighbours = torch.tensor([[[1, 2], [1, 2]]])
    got = triplet_angles(x, anchors, neighbours)
    assert got.shape == (1, 2, 2, 2)
    # anchor 0: directions (1, 0) and (0, 1) -> orthogonal; anchor 3: (0, -1) and (-1, 1)/sqrt(2)
    assert_close(got[0, 0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    c = -1 / math.sqrt(2)
    assert_close(got[0, 1], torch.tensor([[1.0, c], [c, 1.0]]))


def test_triplet_loss_smooth_l1_over_valid_triplets_only():
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    t, s = randn(1, 5, 3, seed=3) * 2, randn(1, 5, 3, seed=4) * 2
    anchors = torch.tensor([[0, 2]])
    # anchor 0: neighbours 1, 3 and the padded 4; anchor 2: itself (excluded) and 1, 3
    neighbours = torch.tensor([[[1, 3, 4], [2, 1, 3]]])
    tl, sl = t[0].tolist(), s[0].tolist()
    expected = []
    for i, near in ((0, [1, 3]), (2, [1, 3])):
        for j in near:
            for k in near:
                if j != k:
                    expected.append(smooth_l1(angle(sl, i, j, k), angle(tl, i, j, k)))
    got = triplet_loss(masked(t, mask), masked(s, mask), mask, anchors, neighbours)
    assert got.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)


def test_triplets_come_from_the_teachers_most_attended_positions():
    # One head, width 1: relations are products x_i x_j. Position 2 is padding and must never be chosen.
    x = torch.tensor([[[2.0], [0.5], [HUGE], [1.0]]])
    mask = torch.tensor([[1, 1, 0, 1]])
    real = [0, 1, 3]
    values = {0: 2.0, 1: 0.5, 3: 1.0}
    probs = {}
    for i in real:
        logits = [values[i] * values[j] for j in real]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        probs[i] = {j: e / sum(exps) for j, e in zip(real, exps, strict=True)}
    received = {j: sum(probs[i][j] for i in real) for j in real}
    expected_anchors = sorted(real, key=lambda j: -received[j])[:2]
    anchors, neighbours = select_triplets(x, mask, heads=1, k1=2, k2=1)
    assert anchors[0].tolist() == expected_anchors
    for a, near in zip(anchors[0].tolist(), neighbours[0].tolist(), strict=True):
        best = max((j for j in real if j != a), key=lambda j: probs[a][j])
        assert near == [best]


# ---------------------------------------------------------------- spans and samples


def test_span_representations_average_real_tokens_in_consecutive_windows():
    x = torch.tensor([[[1.0], [3.0], [5.0], [HUGE], [HUGE]], [[2.0], [4.0], [6.0], [8.0], [10.0]]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    spans, span_mask = span_representations(x, mask, size=2)
    assert span_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert spans[0, :2, 0].tolist() == [2.0, 5.0]  # (1 + 3) / 2, then 5 alone: the padding is left out
    assert spans[1, :, 0].tolist() == [3.0, 7.0, 10.0]


def hand_sample_angles(pooled: list[list[float]], heads: int) -> list[float]:
    out = []
    for h in range(heads):
        xs = [heads_of(v, heads)[h] for v in pooled]
        for i in range(len(xs)):
            for j in range(len(xs)):
                for k in range(len(xs)):
                    out.append(angle(xs, i, j, k))
    return out


def test_sample_loss_smooth_l1_mean_over_every_sample_triplet_and_head():
    t, s = randn(3, 4, 4, seed=5), randn(3, 4, 4, seed=6) * 3
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])

    def pool(x: torch.Tensor) -> list[list[float]]:
        rows = []
        for b in range(3):
            real = [x[b, i].tolist() for i in range(4) if mask[b, i]]
            rows.append([sum(col) / len(real) for col in zip(*real, strict=True)])
        return rows

    ta, sa = hand_sample_angles(pool(t), 2), hand_sample_angles(pool(s), 2)
    expected = sum(smooth_l1(a, b) for a, b in zip(sa, ta, strict=True)) / len(ta)
    got = sample_loss(masked(t, mask), masked(s, mask), mask, heads=2)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert sample_angles(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 1)[0, 0].tolist() == [
        [0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
    ]


def test_relation_heads_follow_the_paper_or_the_common_divisor():
    assert relation_heads(None, 768, 768) == 64
    assert relation_heads(None, 768, 312) == 24  # gcd 24
    assert relation_heads(None, 32, 32) == 32
    assert relation_heads(8, 768, 312) == 8


# ---------------------------------------------------------------- the method


def shape(layers: int, hidden: int = 8, blocks=None) -> ModelShape:
    return ModelShape("classifier", layers, hidden, 2, 2, hidden, teacher_blocks=blocks, output_size=2)


def make(**raw):
    cls = METHODS.get("mgskd")
    return cls(cls.parse_args(raw))


def views(layers: int, seed: int, mask: torch.Tensor, width: int = 8) -> Views:
    states = tuple(masked(randn(2, 4, width, seed=seed + i), mask) for i in range(layers + 1))
    return Views(attention_mask=mask, hidden_states=states)


def batch() -> Batch:
    return Batch(student_inputs={}, teacher_inputs=[], index=torch.arange(2))


def test_identical_representations_give_zero():
    method = make(relation_heads=2, k1=3, k2=3)
    method.setup(Pair(shape(2), shape(2), True))
    v = views(2, 1, MASK)
    assert method(v, v, batch()).item() == pytest.approx(0.0, abs=1e-6)


def test_layers_are_stratified_token_and_span_below_sample_above():
    method = make(relation_heads=2, lower=2)
    method.setup(Pair(shape(4), shape(2, blocks=(1, 3)), True))
    assert method.layer_map == [(0, 0), (2, 1), (4, 2)]
    t, s = views(4, 10, MASK), views(2, 20, MASK)
    b = batch()
    s_upper = Views(attention_mask=MASK, hidden_states=(*s.hidden_states[:2], s.hidden_states[2] * 3 + 1))
    s_lower = Views(attention_mask=MASK, hidden_states=(s.hidden_states[0] + 1, *s.hidden_states[1:]))

    only_lower = make(relation_heads=2, lower=2, sample_weight=0.0)
    only_lower.setup(Pair(shape(4), shape(2, blocks=(1, 3)), True))
    assert only_lower(t, s_upper, b).item() == pytest.approx(only_lower(t, s, b).item(), rel=1e-6)
    only_upper = make(relation_heads=2, lower=2, token_weight=0.0, span_weight=0.0)
    only_upper.setup(Pair(shape(4), shape(2, blocks=(1, 3)), True))
    assert only_upper(t, s_lower, b).item() == pytest.approx(only_upper(t, s, b).item(), rel=1e-6)

    mask = MASK
    expected = 4.0 * sample_loss(t.hidden_states[4], s.hidden_states[2], mask, 2)
    for ti, si in ((0, 0), (2, 1)):
        expected += structure_loss(t.hidden_states[ti], s.hidden_states[si], mask, 2, 20, 20)
        t_spans, span_mask = span_representations(t.hidden_states[ti], mask, 3)
        s_spans, _ = span_representations(s.hidden_states[si], mask, 3)
        expected += structure_loss(t_spans, s_spans, span_mask, 2, 20, 20)
    assert method(t, s, b).item() == pytest.approx(expected.item(), rel=1e-5)


def test_padding_does_not_change_the_loss():
    method = make(relation_heads=2)
    method.setup(Pair(shape(2), shape(2), True))
    t, s = views(2, 30, MASK), views(2, 40, MASK)
    other = Views(attention_mask=MASK, hidden_states=tuple(h.clone() for h in s.hidden_states))
    for h in other.hidden_states:
        h[1, 3] = 7.0
    assert method(t, other, batch()).item() == pytest.approx(method(t, s, batch()).item(), rel=1e-6)


def test_widths_may_differ_and_gradients_stay_finite():
    method = make(relation_heads=4, k1=3, k2=2)
    method.setup(Pair(shape(2, hidden=12), shape(2, hidden=8), True))
    t = views(2, 50, MASK, width=12)
    s = views(2, 60, MASK)
    states = tuple(h.clone().requires_grad_() for h in s.hidden_states)
    method(t, Views(attention_mask=MASK, hidden_states=states), batch()).backward()
    for h in states:
        assert torch.isfinite(h.grad).all()
    assert states[0].grad[0].abs().sum() > 0


def test_setup_explains_a_pair_that_does_not_fit():
    with pytest.raises(IncompatibleError, match="tokenize"):
        make().setup(Pair(shape(2), shape(2), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="not divisible by 5 relation heads"):
        make(relation_heads=5).setup(Pair(shape(2), shape(2), True))
    with pytest.raises(IncompatibleError, match="needs a teacher"):
        make().setup(Pair(None, shape(2), True))
