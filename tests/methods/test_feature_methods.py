"""Feature-level methods (MiniLM, MiniLMv2, PKD, TinyBERT, ALP-KD, RAIL-KD, CKD, SID, MobileBERT,
Universal-KD, LRC-BERT) and their shared relation helpers, against values worked out by hand.

Expected values are computed here with plain Python (``math``) and explicit loops over nested
lists, never with the torch call the implementation uses, so a wrong reduction, direction,
scaling or mask shows. Each method's docstring cites its paper and equation; the hand helpers
below follow those formulas.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.alp_kd import alp_loss
from kdforge.methods.ckd import (
    layer_relation_angle,
    layer_relation_distance,
    word_relation_angle,
    word_relation_distance,
)
from kdforge.methods.lrc_bert import cos_nce, cosine_distances
from kdforge.methods.minilm import minilm_loss
from kdforge.methods.minilmv2 import minilmv2_loss
from kdforge.methods.mobilebert import feature_map_loss
from kdforge.methods.pkd import patience_loss, patient_layers
from kdforge.methods.rail_kd import mean_pool, rail_loss
from kdforge.methods.relations import relation_kl, scaled_relation, split_heads
from kdforge.methods.sid import cls_cosine_loss
from kdforge.methods.tinybert import soft_cross_entropy
from kdforge.methods.universal_kd import universal_loss
from kdforge.models.views import Views

HUGE = 1.0e6  # what padded positions hold: must not leak into any masked loss


# ---------------------------------------------------------------- plain-Python helpers


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    top = max(row)
    exps = [math.exp((z - top) / temperature) for z in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def length(a: list[float]) -> float:
    return math.sqrt(dot(a, a))


def unit(a: list[float]) -> list[float]:
    n = length(a)
    return [x / n for x in a] if n > 0 else [0.0 for _ in a]


def cos(a: list[float], b: list[float]) -> float:
    return dot(a, b) / (length(a) * length(b))


def sub(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def hand_relation(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """``a_i . b_j / sqrt(d)`` for one head, as nested lists."""
    d = len(a[0])
    return [[dot(ai, bj) / math.sqrt(d) for bj in b] for ai in a]


def hand_relation_kl(teacher: list, student: list, mask: list[list[int]]) -> float:
    """Per sample ``1/(H |x|) sum_h sum_{real t} KL(softmax_real(teacher[h][t]) || softmax_real(student[h][t]))``,
    then the batch mean. ``teacher``/``student`` are ``[B][H][T][T]`` score lists; padded keys are
    simply left out of each row and padded query rows are skipped."""
    per_sample = []
    for b, row_mask in enumerate(mask):
        real = [t for t, m in enumerate(row_mask) if m]
        heads = len(teacher[b])
        total = 0.0
        for h in range(heads):
            for t in real:
                p = softmax([teacher[b][h][t][k] for k in real])
                q = softmax([student[b][h][t][k] for k in real])
                total += kl(p, q)
        per_sample.append(total / (heads * len(real)))
    return mean(per_sample)


def hand_scaled_kl(t_a: list, t_b: list, s_a: list, s_b: list, mask: list[list[int]]) -> float:
    """relation KL on ``[B][H][T][d]`` vector lists, relations ``a b^T / sqrt(d)`` built by hand."""
    teacher = [[hand_relation(t_a[b][h], t_b[b][h]) for h in range(len(t_a[b]))] for b in range(len(mask))]
    student = [[hand_relation(s_a[b][h], s_b[b][h]) for h in range(len(s_a[b]))] for b in range(len(mask))]
    return hand_relation_kl(teacher, student, mask)


def randn(*shape_: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape_, generator=torch.Generator().manual_seed(seed))


def pad_with_huge(x: torch.Tensor, mask: torch.Tensor, token_dim: int = 1) -> torch.Tensor:
    """A copy of ``x`` with HUGE (alternating sign) wherever ``mask`` marks padding along ``token_dim``."""
    out = x.clone()
    for b in range(mask.size(0)):
        for t in range(mask.size(1)):
            if not mask[b, t]:
                index = [b] + [slice(None)] * (token_dim - 1) + [t]
                sign = 1.0 if (b + t) % 2 == 0 else -1.0
                out[tuple(index)] = sign * HUGE
    return out


# ---------------------------------------------------------------- relations: scaled_relation / split_heads


def test_scaled_relation_by_hand_with_padded_keys_at_minus_infinity():
    a = torch.tensor([[[[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [HUGE, HUGE, HUGE, HUGE]]]])  # [1, 1, 3, 4]
    b = torch.tensor([[[[2.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [-HUGE, 0.0, HUGE, 0.0]]]])
    got = scaled_relation(a, b, torch.tensor([[1, 1, 0]]))
    # a b^T = [[2, 1], [2, 10]] on real pairs, / sqrt(4) = 2; the padded key column is -inf.
    assert got.shape == (1, 1, 3, 3)
    assert_close(got[0, 0, :2, :2], torch.tensor([[1.0, 0.5], [1.0, 5.0]]))
    assert got[0, 0, :, 2].tolist() == [-math.inf] * 3
    assert torch.isfinite(got[0, 0, 2, :2]).all()  # the padded query row stays finite over real keys


def test_split_heads_of_a_3d_tensor_by_explicit_indexing():
    x = torch.arange(2 * 3 * 6, dtype=torch.float).view(2, 3, 6)
    got = split_heads(x, 3)
    assert got.shape == (2, 3, 3, 2)
    for b in range(2):
        for h in range(3):
            for t in range(3):
                for i in range(2):
                    assert got[b, h, t, i].item() == x[b, t, h * 2 + i].item()


def test_split_heads_of_a_4d_tensor_concatenates_the_heads_first():
    x = torch.arange(1 * 2 * 3 * 2, dtype=torch.float).view(1, 2, 3, 2)  # [B, H0=2, T=3, d0=2]
    concatenated = [x[0, 0, t].tolist() + x[0, 1, t].tolist() for t in range(3)]  # width 4 per token
    one = split_heads(x, 1)
    assert one.shape == (1, 1, 3, 4)
    assert one[0, 0].tolist() == concatenated
    four = split_heads(x, 4)
    assert four.shape == (1, 4, 3, 1)
    for h in range(4):
        assert four[0, h, :, 0].tolist() == [row[h] for row in concatenated]
    # re-splitting into the original head count gives the original heads back
    assert_close(split_heads(x, 2), x)


# ---------------------------------------------------------------- relations: relation_kl


RELATION_MASK = [[1, 1, 1], [1, 1, 0]]


def random_scores(seed: int) -> torch.Tensor:
    """``[B=2, H=2, T=3, T=3]`` scores with padded keys at -inf and HUGE in the padded query row."""
    scores = randn(2, 2, 3, 3, seed=seed) * 2
    scores[1, :, :, 2] = -math.inf
    scores[1, :, 2, :2] = HUGE if seed % 2 else -HUGE
    return scores


def test_relation_kl_matches_the_hand_computed_average_over_heads_and_real_rows():
    teacher, student = random_scores(1), random_scores(2)
    expected = hand_relation_kl(teacher.tolist(), student.tolist(), RELATION_MASK)
    got = relation_kl(teacher, student, torch.tensor(RELATION_MASK))
    assert got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_relation_kl_is_teacher_to_student_not_the_reverse():
    # Three query rows, each a peaked teacher row against a flat student row.
    teacher = torch.tensor([6.0, 0.0, 0.0]).expand(1, 1, 3, 3).clone()
    student = torch.zeros(1, 1, 3, 3)
    mask = torch.tensor([[1, 1, 1]])
    forward = kl(softmax([6.0, 0.0, 0.0]), softmax([0.0, 0.0, 0.0]))
    reverse = kl(softmax([0.0, 0.0, 0.0]), softmax([6.0, 0.0, 0.0]))
    assert abs(forward - reverse) > 0.5
    got = relation_kl(teacher, student, mask).item()
    assert got == pytest.approx(forward, rel=1e-5)


def test_relation_kl_ignores_padded_query_rows_whatever_they_hold():
    teacher, student = random_scores(3), random_scores(4)
    base = relation_kl(teacher, student, torch.tensor(RELATION_MASK)).item()
    teacher[1, :, 2, :2] = torch.tensor([[HUGE, -HUGE], [-HUGE, 3.0]])
    student[1, :, 2, :2] = torch.tensor([[-HUGE, HUGE], [0.0, HUGE]])
    assert relation_kl(teacher, student, torch.tensor(RELATION_MASK)).item() == pytest.approx(base, rel=1e-6)


def test_relation_kl_of_padded_sequences_equals_that_of_the_unpadded_ones():
    # Vectors [B, H, T, d]; sample 1's last token is padding and holds HUGE numbers.
    mask = torch.tensor(RELATION_MASK)
    tq, tk, sq, sk = (pad_with_huge(randn(2, 2, 3, 4, seed=s), mask, token_dim=2) for s in (5, 6, 7, 8))
    got = relation_kl(scaled_relation(tq, tk, mask), scaled_relation(sq, sk, mask), mask)
    assert torch.isfinite(got)
    alone = [
        relation_kl(
            scaled_relation(tq[b : b + 1, :, :n], tk[b : b + 1, :, :n], mask[b : b + 1, :n]),
            scaled_relation(sq[b : b + 1, :, :n], sk[b : b + 1, :, :n], mask[b : b + 1, :n]),
            mask[b : b + 1, :n],
        ).item()
        for b, n in ((0, 3), (1, 2))
    ]
    assert got.item() == pytest.approx(mean(alone), rel=1e-5)
    expected = hand_scaled_kl(tq.tolist(), tk.tolist(), sq.tolist(), sk.tolist(), RELATION_MASK)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_relation_kl_of_identical_inputs_is_zero_and_accepts_a_boolean_mask():
    scores = random_scores(9)
    assert relation_kl(scores, scores.clone(), torch.tensor(RELATION_MASK)).item() == 0.0
    assert relation_kl(scores, scores.clone(), torch.tensor(RELATION_MASK).bool()).item() == 0.0
    other = random_scores(10)
    as_int = relation_kl(scores, other, torch.tensor(RELATION_MASK)).item()
    assert relation_kl(scores, other, torch.tensor(RELATION_MASK).bool()).item() == pytest.approx(as_int)


def test_relation_kl_gradient_is_finite_with_padding():
    mask = torch.tensor(RELATION_MASK)
    sq = pad_with_huge(randn(2, 2, 3, 4, seed=11), mask, token_dim=2).requires_grad_()
    tq = pad_with_huge(randn(2, 2, 3, 4, seed=12), mask, token_dim=2)
    loss = relation_kl(scaled_relation(tq, tq, mask), scaled_relation(sq, sq, mask), mask)
    loss.backward()
    assert torch.isfinite(sq.grad).all()
    assert sq.grad[0].abs().sum() > 0


# ---------------------------------------------------------------- MiniLM


def test_minilm_loss_on_a_one_sample_one_head_example_by_hand():
    # Teacher head width 2, student head width 1 (MiniLM allows different widths).
    tq, tk, tv = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 0.0]], [[1.0, 2.0], [0.0, 1.0]]
    sq, sk, sv = [[1.0], [2.0]], [[1.0], [-1.0]], [[1.0], [3.0]]

    def rows(a, b):
        d = len(a[0])
        return [[sum(x * y for x, y in zip(ai, bj, strict=True)) / math.sqrt(d) for bj in b] for ai in a]

    # Teacher Q K^T / sqrt(2) = [[1, 2], [1, 0]] / sqrt(2); student Q K^T / 1 = [[1, -1], [2, -2]].
    assert rows(tq, tk) == [[1 / math.sqrt(2), 2 / math.sqrt(2)], [1 / math.sqrt(2), 0.0]]
    attention = mean([kl(softmax(t), softmax(s)) for t, s in zip(rows(tq, tk), rows(sq, sk), strict=True)])
    # V V^T / sqrt(d): teacher [[5, 2], [2, 1]] / sqrt(2), student [[1, 3], [3, 9]].
    values = mean([kl(softmax(t), softmax(s)) for t, s in zip(rows(tv, tv), rows(sv, sv), strict=True)])

    def tensor(rows_):
        return torch.tensor([[rows_]])  # [1, 1, T, d]

    mask = torch.tensor([[1, 1]])
    got_at, got_vr = minilm_loss((tensor(tq), tensor(tk), tensor(tv)), (tensor(sq), tensor(sk), tensor(sv)), mask)
    assert got_at.item() == pytest.approx(attention, rel=1e-5)
    assert got_vr.item() == pytest.approx(values, rel=1e-5)
    assert attention > 0.01 and values > 0.01

    # A third, padded token full of HUGE numbers changes nothing.
    def padded(rows_):
        return torch.tensor([[rows_ + [[HUGE] * len(rows_[0])]]])

    got_at, got_vr = minilm_loss(
        (padded(tq), padded(tk), padded(tv)), (padded(sq), padded(sk), padded(sv)), torch.tensor([[1, 1, 0]])
    )
    assert got_at.item() == pytest.approx(attention, rel=1e-5)
    assert got_vr.item() == pytest.approx(values, rel=1e-5)


def test_minilm_loss_of_identical_inputs_is_zero_zero():
    mask = torch.tensor(RELATION_MASK)
    qkv = tuple(randn(2, 3, 3, 4, seed=s) for s in (1, 2, 3))
    attention, values = minilm_loss(qkv, tuple(x.clone() for x in qkv), mask)
    assert (attention.item(), values.item()) == (0.0, 0.0)


def test_minilm_value_term_ignores_queries_and_keys():
    mask = torch.tensor([[1, 1, 1]])
    t = tuple(randn(1, 2, 3, 4, seed=s) for s in (1, 2, 3))
    s = (randn(1, 2, 3, 4, seed=4), randn(1, 2, 3, 4, seed=5), t[2].clone())
    attention, values = minilm_loss(t, s, mask)
    assert attention.item() > 0 and values.item() == 0.0


# ---------------------------------------------------------------- MiniLMv2


def test_minilmv2_relation_heads_resplit_the_concatenated_heads_by_hand():
    # Teacher: 2 attention heads of width 2; student: 1 head of width 4.  relation_heads=1 takes
    # relations of the concatenated 4-wide vectors, scaled by sqrt(4).
    mask = [[1, 1, 1]]
    teacher = [randn(1, 2, 3, 2, seed=s) for s in (1, 2, 3)]
    student = [randn(1, 1, 3, 4, seed=s) for s in (4, 5, 6)]
    got = minilmv2_loss(tuple(teacher), tuple(student), torch.tensor(mask), relation_heads=1)
    assert len(got) == 3
    for t, s, loss in zip(teacher, student, got, strict=True):
        concat = [t[0, 0, i].tolist() + t[0, 1, i].tolist() for i in range(3)]
        s_rows = s[0, 0].tolist()
        assert len(concat[0]) == 4
        expected = mean(
            [
                kl(softmax(t_row), softmax(s_row))
                for t_row, s_row in zip(hand_relation(concat, concat), hand_relation(s_rows, s_rows), strict=True)
            ]
        )
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_minilmv2_same_concatenation_gives_zero_for_any_relation_head_count():
    # A 2-head teacher and a 1-head student whose concatenated vectors are the same numbers.
    teacher = tuple(randn(1, 2, 3, 2, seed=s) for s in (1, 2, 3))
    student = tuple(split_heads(t, 1) for t in teacher)  # [1, 1, 3, 4]
    for heads in (1, 2, 4):
        losses = minilmv2_loss(teacher, student, torch.tensor([[1, 1, 1]]), relation_heads=heads)
        assert [loss.item() for loss in losses] == [0.0, 0.0, 0.0], heads


def test_minilmv2_with_two_relation_heads_averages_the_per_head_relations():
    mask = [[1, 1, 1], [1, 1, 0]]
    t = randn(2, 2, 3, 2, seed=7)
    s = randn(2, 1, 3, 4, seed=8)
    s_heads = [[[s[b, 0, i, 2 * h : 2 * h + 2].tolist() for i in range(3)] for h in range(2)] for b in range(2)]
    expected = hand_scaled_kl(t.tolist(), t.tolist(), s_heads, s_heads, mask)
    pad_mask = torch.tensor(mask)
    got = minilmv2_loss((t, t, t), (s, s, s), pad_mask, relation_heads=2)
    for loss in got:
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    # HUGE in the padded token changes nothing
    huge_t, huge_s = pad_with_huge(t, pad_mask, token_dim=2), pad_with_huge(s, pad_mask, token_dim=2)
    again = minilmv2_loss((huge_t,) * 3, (huge_s,) * 3, pad_mask, relation_heads=2)
    assert again[0].item() == pytest.approx(expected, rel=1e-5)


def test_minilmv2_only_the_differing_relation_is_nonzero():
    q = randn(1, 2, 3, 2, seed=1)
    k = randn(1, 2, 3, 2, seed=2)
    v = randn(1, 2, 3, 2, seed=3)
    losses = minilmv2_loss((q, k, v), (randn(1, 2, 3, 2, seed=4), k.clone(), v.clone()), torch.ones(1, 3), 2)
    assert losses[0].item() > 0 and losses[1].item() == 0.0 and losses[2].item() == 0.0


# ---------------------------------------------------------------- PKD


def test_patient_layers_skip_and_last_12_to_6():
    assert patient_layers(12, 6, "skip") == [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]
    assert patient_layers(12, 6, "last") == [(7, 1), (8, 2), (9, 3), (10, 4), (11, 5)]


@pytest.mark.parametrize(
    ("teacher", "student", "skip", "last"),
    [
        (12, 3, [(4, 1), (8, 2)], [(10, 1), (11, 2)]),
        (12, 4, [(3, 1), (6, 2), (9, 3)], [(9, 1), (10, 2), (11, 3)]),
        (4, 2, [(2, 1)], [(3, 1)]),
        (6, 6, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)], [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]),
    ],
)
def test_patient_layers_examples(teacher, student, skip, last):
    assert patient_layers(teacher, student, "skip") == skip
    assert patient_layers(teacher, student, "last") == last
    for pairs in (skip, last):
        # student layers 1..M-1 (the top is left to the prediction loss), teacher below its top
        assert [s for _, s in pairs] == list(range(1, student))
        assert all(1 <= t < teacher for t, _ in pairs)


def test_patience_loss_by_hand():
    # Sample 1: s/|s| = (0.6, 0.8), t/|t| = (0, 1): squared distance 0.36 + 0.04 = 0.4.
    # Sample 2: s/|s| = (1, 0), t/|t| = (-1, 0): squared distance 4.   Batch mean 2.2.
    s1, t1 = torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-7.0, 0.0]])
    # Second layer: identical directions at different lengths -> 0.
    s2, t2 = torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.tensor([[3.0, 3.0], [0.0, 0.5]])
    assert patience_loss([s1], [t1]).item() == pytest.approx(2.2, rel=1e-6)
    assert patience_loss([s2], [t2]).item() == pytest.approx(0.0, abs=1e-6)
    assert patience_loss([s1, s2], [t1, t2]).item() == pytest.approx(2.2, rel=1e-6)
    # layers are summed, not averaged
    assert patience_loss([s1, s1], [t1, t1]).item() == pytest.approx(4.4, rel=1e-6)


def test_patience_loss_identical_is_zero_and_scale_invariant():
    s = [randn(3, 8, seed=i) for i in range(3)]
    t = [randn(3, 8, seed=10 + i) for i in range(3)]
    assert patience_loss(s, [x.clone() for x in s]).item() == pytest.approx(0.0, abs=1e-6)
    base = patience_loss(s, t).item()
    assert base > 0
    assert patience_loss(s, [5 * x for x in t]).item() == pytest.approx(base, rel=1e-5)
    assert patience_loss([0.1 * x for x in s], t).item() == pytest.approx(base, rel=1e-5)
    expected = sum(
        mean([sum(d * d for d in sub(unit(a), unit(b))) for a, b in zip(x.tolist(), y.tolist(), strict=True)])
        for x, y in zip(s, t, strict=True)
    )
    assert base == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- TinyBERT's soft cross-entropy


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_soft_cross_entropy_by_hand(temperature):
    student = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    teacher = [[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]
    per_row = []
    for s, t in zip(student, teacher, strict=True):
        p_t, p_s = softmax(t, temperature), softmax(s, temperature)
        per_row.append(-sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s, strict=True)))
    got = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher), temperature)
    assert got.item() == pytest.approx(sum(per_row) / 2, rel=1e-5)


def test_soft_cross_entropy_of_identical_logits_is_the_teacher_entropy():
    logits = [[2.0, 0.0, -1.0]]
    p = softmax(logits[0], 2.0)
    entropy = -sum(pi * math.log(pi) for pi in p)
    got = soft_cross_entropy(torch.tensor(logits), torch.tensor(logits), 2.0)
    assert got.item() == pytest.approx(entropy, rel=1e-5)
    assert got.dtype == torch.float32
    half = soft_cross_entropy(torch.tensor(logits).half(), torch.tensor(logits).half(), 2.0)
    assert half.dtype == torch.float32


# ---------------------------------------------------------------- ALP-KD


def test_alp_loss_one_sample_two_teacher_layers_by_hand():
    # h_s = (1, 0); teacher layers (1, 0) and (0, 2): dots 1 and 0 -> eps = (e, 1) / (e + 1).
    # target = (e/(e+1), 2/(e+1)); MSE over 2 dims = ((1/(e+1))^2 + (2/(e+1))^2) / 2 = 5 / (2 (e+1)^2).
    e = math.e
    hs = [torch.tensor([[1.0, 0.0]])]
    ht = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])]
    assert alp_loss(hs, ht).item() == pytest.approx(5 / (2 * (e + 1) ** 2), rel=1e-6)
    # A second student layer (0, 1): dots 0 and 2 -> eps = (1, e^2)/(1 + e^2); its MSE is added.
    w1, w2 = 1 / (1 + e**2), e**2 / (1 + e**2)
    second = ((0 - w1) ** 2 + (1 - 2 * w2) ** 2) / 2
    got = alp_loss([hs[0], torch.tensor([[0.0, 1.0]])], ht)
    assert got.item() == pytest.approx(5 / (2 * (e + 1) ** 2) + second, rel=1e-6)


def test_alp_loss_random_batch_against_explicit_loops():
    hs = [randn(3, 4, seed=i) for i in range(2)]
    ht = [randn(3, 4, seed=10 + i) for i in range(3)]
    expected = 0.0
    for h in hs:
        squares = []
        for b in range(3):
            s = h[b].tolist()
            layers = [t[b].tolist() for t in ht]
            eps = softmax([dot(s, t) for t in layers])
            target = [sum(eps[j] * layers[j][d] for j in range(3)) for d in range(4)]
            squares += [(s[d] - target[d]) ** 2 for d in range(4)]
        expected += mean(squares)
    assert alp_loss(hs, ht).item() == pytest.approx(expected, rel=1e-5)


def test_alp_loss_is_zero_when_the_mix_is_the_student():
    # One teacher layer equal to the student: the only mix is that layer.
    h = randn(2, 3, seed=1)
    assert alp_loss([h], [h.clone()]).item() == 0.0


# ---------------------------------------------------------------- RAIL-KD (loss and pooling)


def test_rail_loss_by_hand():
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0], [-7.0, 0.0]])
    assert rail_loss(s, t).item() == pytest.approx((0.4 + 4.0) / 2, rel=1e-6)
    assert rail_loss(s, 3 * s).item() == pytest.approx(0.0, abs=1e-6)


def test_mean_pool_leaves_padding_out():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [HUGE, HUGE]], [[4.0, 0.0], [HUGE, -HUGE], [-HUGE, HUGE]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 4.0], [4.0, 0.0]]))


# ---------------------------------------------------------------- CKD


def hand_wr_distance(teacher: list, student: list, mask: list[list[int]]) -> float:
    """Rows of the token-token cosine matrix over real tokens, diagonal excluded; KL pooled over rows."""
    total, rows = 0.0, 0
    for b, row_mask in enumerate(mask):
        real = [i for i, m in enumerate(row_mask) if m]
        for i in real:
            others = [j for j in real if j != i]
            if not others:
                continue
            p = softmax([cos(teacher[b][i], teacher[b][j]) for j in others])
            q = softmax([cos(student[b][i], student[b][j]) for j in others])
            total += kl(p, q)
            rows += 1
    return total / rows


def hand_wr_angle(teacher: list, student: list, mask: list[list[int]], window: int) -> float:
    """For each real token i, every (j, k) of real tokens within ``window // 2`` of i, j, k != i:
    squared difference of ``<unit(x_i - x_j), unit(x_i - x_k)>``; mean over those triples."""
    half = window // 2
    total, count = 0.0, 0
    for b, row_mask in enumerate(mask):
        n = len(row_mask)
        for i in range(n):
            if not row_mask[i]:
                continue
            near = [j for j in range(i - half, i + half + 1) if 0 <= j < n and j != i and row_mask[j]]
            for j in near:
                for k in near:

                    def angle(x, i=i, j=j, k=k):
                        return dot(unit(sub(x[i], x[j])), unit(sub(x[i], x[k])))

                    total += (angle(student[b]) - angle(teacher[b])) ** 2
                    count += 1
    return total / count


def hand_ltr_distance(teacher: list, student: list, mask: list[list[int]]) -> float:
    """``teacher[l][b][t]`` vectors: per real token, layer-layer cosine rows (diagonal excluded)."""
    layers = len(teacher)
    total, rows = 0.0, 0
    for b, row_mask in enumerate(mask):
        for t, m in enumerate(row_mask):
            if not m:
                continue
            for a in range(layers):
                others = [c for c in range(layers) if c != a]
                p = softmax([cos(teacher[a][b][t], teacher[c][b][t]) for c in others])
                q = softmax([cos(student[a][b][t], student[c][b][t]) for c in others])
                total += kl(p, q)
                rows += 1
    return total / rows


def hand_ltr_angle(teacher: list, student: list, mask: list[list[int]]) -> float:
    """Per real token the mean over all L^3 layer triples (a triple with j = i or k = i has no
    direction and counts as angle 0 on both sides, as in RKD's angle), then the mean over tokens."""
    layers = len(teacher)
    per_token = []
    for b, row_mask in enumerate(mask):
        for t, m in enumerate(row_mask):
            if not m:
                continue
            s = [student[l_][b][t] for l_ in range(layers)]
            x = [teacher[l_][b][t] for l_ in range(layers)]
            err = 0.0
            for i in range(layers):
                for j in range(layers):
                    for k in range(layers):
                        a_s = dot(unit(sub(s[i], s[j])), unit(sub(s[i], s[k])))
                        a_t = dot(unit(sub(x[i], x[j])), unit(sub(x[i], x[k])))
                        err += (a_s - a_t) ** 2
            per_token.append(err / layers**3)
    return mean(per_token)


CKD_MASK = [[1, 1, 1, 1], [1, 1, 1, 0]]


def ckd_pair(seed: int, layers: int | None = None):
    mask = torch.tensor(CKD_MASK)
    if layers is None:
        return (pad_with_huge(randn(2, 4, 3, seed=seed), mask), pad_with_huge(randn(2, 4, 5, seed=seed + 1), mask))
    t = [pad_with_huge(randn(2, 4, 3, seed=seed + i), mask) for i in range(layers)]
    s = [pad_with_huge(randn(2, 4, 5, seed=seed + 50 + i), mask) for i in range(layers)]
    return t, s


def test_word_relation_distance_by_hand_with_padding_and_different_widths():
    t, s = ckd_pair(1)
    expected = hand_wr_distance(t.tolist(), s.tolist(), CKD_MASK)
    got = word_relation_distance(t, s, torch.tensor(CKD_MASK))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_word_relation_distance_identical_is_zero_and_padding_is_ignored():
    t, s = ckd_pair(2)
    mask = torch.tensor(CKD_MASK)
    assert word_relation_distance(t, t.clone(), mask).item() == 0.0
    base = word_relation_distance(t, s, mask).item()
    t2, s2 = t.clone(), s.clone()
    t2[1, 3], s2[1, 3] = -t2[1, 3] * 7, 0.5
    assert word_relation_distance(t2, s2, mask).item() == pytest.approx(base, rel=1e-6)
    # it only sees directions: rescaling tokens changes nothing
    assert word_relation_distance(t * 3, s * 0.2, mask).item() == pytest.approx(base, rel=1e-5)


def test_word_relation_angle_of_three_points_by_hand():
    # Angle at the middle token between its two neighbours (window 3 = one token either side).
    # Teacher: x0=(1,0), x1=(0,0), x2=(0,1): unit(x1-x0)=(-1,0), unit(x1-x2)=(0,-1) -> cos 0.
    # Student: x2=(1,1): unit(x1-x2)=(-1,-1)/sqrt2 -> cos 1/sqrt2.
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])
    student = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 1, 1]])
    # Triples: token 0 sees only x1 -> (j, k) = (1, 1); token 2 only (1, 1); token 1 sees x0, x2 ->
    # (0,0), (0,2), (2,0), (2,2).  (j, j) angles are 1 on both sides; (0,2) and (2,0) err by 1/2 each.
    expected = (0 + 0 + (0 + 0.5 + 0.5 + 0)) / (1 + 1 + 4)
    assert hand_wr_angle(teacher.tolist(), student.tolist(), [[1, 1, 1]], 3) == pytest.approx(expected)
    got = word_relation_angle(teacher, student, mask, window=3)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_word_relation_angle_by_hand_with_window_and_padding():
    t, s = ckd_pair(3)
    for window in (3, 5, 21):
        expected = hand_wr_angle(t.tolist(), s.tolist(), CKD_MASK, window)
        got = word_relation_angle(t, s, torch.tensor(CKD_MASK), window)
        assert got.item() == pytest.approx(expected, rel=1e-5), window


def test_word_relation_angle_window_limits_the_neighbours():
    # Five tokens on a line except the last one: with window 3 (neighbours at distance 1) the
    # first token's neighbourhood never reaches the bent last token.
    teacher = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]])
    student = teacher.clone()
    student[0, 4] = torch.tensor([3.0, 1.0])
    mask = torch.tensor([[1, 1, 1, 1, 1]])
    small = word_relation_angle(teacher, student, mask, window=3).item()
    large = word_relation_angle(teacher, student, mask, window=9).item()
    assert small == pytest.approx(hand_wr_angle(teacher.tolist(), student.tolist(), [[1] * 5], 3), rel=1e-5)
    assert large == pytest.approx(hand_wr_angle(teacher.tolist(), student.tolist(), [[1] * 5], 9), rel=1e-5)
    assert small > 0 and large > 0


def test_word_relation_angle_identical_zero_and_invariant_to_similarity_transforms():
    t, s = ckd_pair(4)
    mask = torch.tensor(CKD_MASK)
    assert word_relation_angle(t, t.clone(), mask, 5).item() == pytest.approx(0.0, abs=1e-10)
    # rotating, scaling and shifting all tokens keeps every angle
    rot = torch.tensor([[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    moved = (t @ rot.T) * 2.5 + torch.tensor([1.0, -2.0, 0.5])
    moved = pad_with_huge(moved, mask)
    assert word_relation_angle(t, moved, mask, 5).item() == pytest.approx(0.0, abs=1e-9)


def test_layer_relation_distance_by_hand():
    t, s = ckd_pair(5, layers=3)
    expected = hand_ltr_distance([x.tolist() for x in t], [x.tolist() for x in s], CKD_MASK)
    got = layer_relation_distance(t, s, torch.tensor(CKD_MASK))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert layer_relation_distance(t, [x.clone() for x in t], torch.tensor(CKD_MASK)).item() == 0.0


def test_layer_relation_angle_of_three_layers_by_hand():
    # One real token whose three layer vectors form a right angle at layer 1 in the teacher
    # and a 45-degree angle there in the student; a padded second token holds HUGE numbers.
    teacher = [torch.tensor([[[1.0, 0.0], [HUGE, HUGE]]]), torch.tensor([[[0.0, 0.0], [-HUGE, HUGE]]])]
    teacher.append(torch.tensor([[[0.0, 1.0], [HUGE, -HUGE]]]))
    student = [torch.tensor([[[1.0, 0.0], [HUGE, 0.0]]]), torch.tensor([[[0.0, 0.0], [0.0, HUGE]]])]
    student.append(torch.tensor([[[1.0, 1.0], [-HUGE, 0.0]]]))
    mask = [[1, 0]]
    # Non-degenerate triples (i, j, k) with j, k != i: at i=1 the (0,2),(2,0) pairs err by 1/2 each.
    # At i=0: unit(x0-x1), unit(x0-x2): teacher (1,0).(1,-1)/sqrt2 = 1/sqrt2; student (1,0).(0,-1) = 0
    #   -> the (1,2), (2,1) pairs err by 1/2 each.
    # At i=2: teacher unit(x2-x0)=(-1,1)/sqrt2, unit(x2-x1)=(0,1) -> 1/sqrt2; student (0,1).(1,1)/sqrt2
    #   -> 1/sqrt2: no error.  Total error 2, over 27 triples.
    expected = 2 / 27
    hand = hand_ltr_angle([x.tolist() for x in teacher], [x.tolist() for x in student], mask)
    assert hand == pytest.approx(expected)
    got = layer_relation_angle(teacher, student, torch.tensor(mask))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_layer_relation_angle_random_with_padding_and_identical_zero():
    t, s = ckd_pair(6, layers=4)
    mask = torch.tensor(CKD_MASK)
    expected = hand_ltr_angle([x.tolist() for x in t], [x.tolist() for x in s], CKD_MASK)
    assert layer_relation_angle(t, s, mask).item() == pytest.approx(expected, rel=1e-5)
    assert layer_relation_angle(t, [x.clone() for x in t], mask).item() == pytest.approx(0.0, abs=1e-10)


def test_ckd_relations_gradients_are_finite_with_padding():
    mask = torch.tensor(CKD_MASK)
    t, s = ckd_pair(7, layers=3)
    s = [x.requires_grad_() for x in s]
    total = layer_relation_distance(t, s, mask) + layer_relation_angle(t, s, mask)
    for a, b in zip(t, s, strict=True):
        total = total + word_relation_distance(a, b, mask) + word_relation_angle(a, b, mask, 3)
    total.backward()
    for x in s:
        assert torch.isfinite(x.grad).all()
        assert x.grad[0].abs().sum() > 0


# ---------------------------------------------------------------- SID: [CLS] cosine


def test_cls_cosine_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    t = torch.tensor([[0.0, 3.0], [-2.0, -2.0], [1.0, math.sqrt(3.0)]])
    # 1 - cos: orthogonal 1, opposite 2, 60 degrees 0.5 -> mean 3.5 / 3
    assert cls_cosine_loss(s, t).item() == pytest.approx(3.5 / 3, rel=1e-6)
    assert cls_cosine_loss(s, 4 * s).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- MobileBERT: feature maps


def parameter_free_layer_norm(x: list[float], eps: float = 1e-5) -> list[float]:
    mu = mean(x)
    var = mean([(v - mu) ** 2 for v in x])
    return [(v - mu) / math.sqrt(var + eps) for v in x]


def test_feature_map_loss_by_hand():
    # student token (1, 3): mean 2, variance 1 -> (-1, 1)/sqrt(1 + eps);
    # teacher (5, 1): mean 3, variance 4 -> (2, -2)/sqrt(4 + eps); squared differences about 4 and 4.
    student = torch.tensor([[[1.0, 3.0], [HUGE, 0.0]]])
    teacher = torch.tensor([[[5.0, 1.0], [-HUGE, HUGE]]])
    mask = [[1, 0]]
    a, b = parameter_free_layer_norm([1.0, 3.0]), parameter_free_layer_norm([5.0, 1.0])
    expected = mean([(x - y) ** 2 for x, y in zip(a, b, strict=True)])
    assert expected == pytest.approx(4.0, rel=1e-4)
    assert feature_map_loss(student, teacher, torch.tensor(mask)).item() == pytest.approx(expected, rel=1e-5)


def test_feature_map_loss_random_against_loops():
    mask = [[1, 1, 1], [1, 1, 0]]
    s, t = randn(2, 3, 4, seed=1), randn(2, 3, 4, seed=2)
    squares = []
    for b in range(2):
        for i in range(3):
            if mask[b][i]:
                a, c = parameter_free_layer_norm(s[b, i].tolist()), parameter_free_layer_norm(t[b, i].tolist())
                squares += [(x - y) ** 2 for x, y in zip(a, c, strict=True)]
    expected = mean(squares)  # 1/(T N) over real tokens and features
    got = feature_map_loss(pad_with_huge(s, torch.tensor(mask)), t, torch.tensor(mask))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_feature_map_loss_is_invariant_to_scaling_and_shifting_each_token():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    s, t = randn(2, 3, 8, seed=3), randn(2, 3, 8, seed=4)
    base = feature_map_loss(s, t, mask).item()
    scale = torch.tensor([[2.0, 0.5, 7.0], [3.0, 1.5, 1.0]])[..., None]
    shift = torch.tensor([[1.0, -4.0, 0.25], [10.0, 0.0, 2.0]])[..., None]
    assert feature_map_loss(s * scale + shift, t, mask).item() == pytest.approx(base, rel=1e-3)
    assert feature_map_loss(s, t * scale - shift, mask).item() == pytest.approx(base, rel=1e-3)
    assert feature_map_loss(s, s * scale + shift, mask).item() == pytest.approx(0.0, abs=1e-4)


# ---------------------------------------------------------------- Universal-KD


def hand_universal(student: list[list[list[float]]], teacher: list[list[list[float]]]) -> float:
    """``student[i][b]``, ``teacher[j][b]``: sum over student layers of the batch-mean
    ``KL(softmax(t~_i) || softmax(s_i))`` with ``t~_i = sum_j softmax_j(s_i . t_j) t_j``."""
    total = 0.0
    batch = len(student[0])
    for s_layer in student:
        per_sample = []
        for b in range(batch):
            s = s_layer[b]
            layers = [t[b] for t in teacher]
            eps = softmax([dot(s, t) for t in layers])
            target = [sum(eps[j] * layers[j][d] for j in range(len(layers))) for d in range(len(s))]
            per_sample.append(kl(softmax(target), softmax(s)))
        total += mean(per_sample)
    return total


def test_universal_loss_on_a_hand_case():
    # s = (1, 0); teacher layers (0, 0) and (2, 0): dots 0, 2 -> eps = (1, e^2)/(1+e^2);
    # t~ = (2 e^2/(1+e^2), 0); loss = KL(softmax(t~) || softmax(1, 0)).
    e2 = math.e**2
    target = [2 * e2 / (1 + e2), 0.0]
    expected = kl(softmax(target), softmax([1.0, 0.0]))
    s = [torch.tensor([[1.0, 0.0]])]
    t = [torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    assert universal_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert hand_universal([x.tolist() for x in s], [x.tolist() for x in t]) == pytest.approx(expected)


def test_universal_loss_random_layers_and_batch():
    s = [randn(3, 4, seed=i) for i in range(2)]
    t = [randn(3, 4, seed=10 + i) for i in range(3)]
    expected = hand_universal([x.tolist() for x in s], [x.tolist() for x in t])
    assert universal_loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_universal_loss_is_zero_when_every_teacher_layer_is_the_student():
    s = randn(2, 4, seed=1)
    assert universal_loss([s], [s.clone(), s.clone()]).item() == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------- LRC-BERT


def test_cosine_distances_and_cos_nce_two_samples_by_hand():
    s = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # [B=2, T=1, d=2]
    t = torch.tensor([[[1.0, 1.0]], [[-1.0, 0.0]]])
    r = 1 / math.sqrt(2)
    # g = 1 - cos: g(s0,t0) = 1 - r, g(s0,t1) = 2, g(s1,t0) = 1 - r, g(s1,t1) = 1
    expected_g = [[1 - r, 2.0], [1 - r, 1.0]]
    g = cosine_distances(s, t, torch.tensor([[1], [1]]))
    assert_close(g, torch.tensor(expected_g))
    # K = 1 negative: L_i = g_ii + 1 - g_ij / 2
    l0 = (1 - r) + 1 - 2.0 / 2
    l1 = 1.0 + 1 - (1 - r) / 2
    assert cos_nce(g).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_cosine_distances_average_real_positions_shared_by_both_samples():
    # Sample 1's second token is padding: pairs involving it average position 0 only.
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [HUGE, -HUGE]]])
    t = torch.tensor([[[0.0, 1.0], [0.0, 2.0]], [[-1.0, 0.0], [-HUGE, HUGE]]])
    mask = torch.tensor([[1, 1], [1, 0]])
    r = 1 / math.sqrt(2)
    expected = [
        [1 - mean([0.0, 1.0]), 1 - (-1.0)],  # (s0, t0): cos 0 and 1; (s0, t1): position 0 cos -1
        [1 - r, 1 - (-r)],  # (s1, t0): position 0 cos((1,1),(0,1)) = r; (s1, t1): -r
    ]
    assert_close(cosine_distances(s, t, mask), torch.tensor(expected))


def test_cos_nce_with_three_samples_by_hand():
    g = [[0.2, 1.5, 0.7], [1.0, 0.1, 2.0], [0.3, 0.9, 0.0]]
    # K = 2 negatives each: L_i = g_ii + 1 - (sum of the other two) / 4
    expected = mean([g[i][i] + 1 - sum(g[i][j] for j in range(3) if j != i) / 4 for i in range(3)])
    assert cos_nce(torch.tensor(g)).item() == pytest.approx(expected, rel=1e-6)


def test_cos_nce_bounds_student_equals_teacher_and_opposite_negatives():
    # g_ii = 0 and all negatives at the maximum distance 2: L = 0 + 1 - 2K/(2K) = 0.
    s = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]]])
    g = cosine_distances(s, s.clone(), torch.ones(2, 1))
    assert_close(g, torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
    assert cos_nce(g).item() == pytest.approx(0.0, abs=1e-6)


# ================================================================= method classes


def shape(kind="embedding", layers=4, hidden=32, heads=4, labels=None, blocks=None) -> ModelShape:
    return ModelShape(
        kind=kind,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_labels=labels,
        embedding_size=hidden,
        teacher_blocks=blocks,
    )


def make(name: str, **raw):
    cls = METHODS.get(name)
    return cls(cls.parse_args(raw))


FEATURE_METHODS = [
    "alp_kd",
    "annealing_kd",
    "ckd",
    "continuation_kd",
    "lrc_bert",
    "minilm",
    "minilmv2",
    "mobilebert",
    "pkd",
    "rail_kd",
    "sid",
    "tinybert",
    "universal_kd",
]


def test_the_feature_methods_are_registered():
    for name in FEATURE_METHODS:
        assert name in METHODS
        assert METHODS.get(name).registered_name == name


@pytest.mark.parametrize("name", FEATURE_METHODS)
def test_parse_args_rejects_unknown_arguments(name):
    cls = METHODS.get(name)
    with pytest.raises(ValueError) as info:
        cls.parse_args({"bogus_argument": 1})
    message = str(info.value)
    assert f"method {name!r} has no argument 'bogus_argument'" in message
    assert "valid: name, weight" in message
    for field in cls.Args.model_fields:
        assert field in message


@pytest.mark.parametrize("name", FEATURE_METHODS)
def test_each_feature_method_cites_its_paper_in_the_docstring(name):
    cls = METHODS.get(name)
    doc = cls.__doc__ or ""
    reference = cls.paper.split(":", 1)[1]
    assert reference in doc, (cls.paper, doc)
    assert cls.summary.strip()


@pytest.mark.parametrize(
    ("name", "raw", "argument"),
    [
        ("minilmv2", {"relation_heads": 0}, "relation_heads"),
        ("minilmv2", {"weights": [1.0, 1.0]}, "weights"),
        ("pkd", {"strategy": "middle"}, "strategy"),
        ("tinybert", {"parts": []}, "parts"),
        ("tinybert", {"parts": ["logits"]}, "parts"),
        ("tinybert", {"temperature": 0}, "temperature"),
        ("rail_kd", {"projection_size": 0}, "projection_size"),
        ("ckd", {"window": 0}, "window"),
        ("universal_kd", {"pooling": "max"}, "pooling"),
        ("annealing_kd", {"max_temperature": 0}, "max_temperature"),
        ("continuation_kd", {"separation": 0}, "separation"),
    ],
)
def test_parse_args_rejects_bad_values(name, raw, argument):
    with pytest.raises(ValueError) as info:
        METHODS.get(name).parse_args(raw)
    assert str(info.value).startswith(f"method {name!r}, {argument}"), str(info.value)


@pytest.mark.parametrize("name", FEATURE_METHODS)
def test_every_feature_method_needs_a_teacher(name):
    with pytest.raises(IncompatibleError, match=name):
        make(name).setup(Pair(None, shape("classifier", labels=2), True))


@pytest.mark.parametrize("name", ["minilm", "minilmv2", "ckd", "mobilebert", "lrc_bert", "tinybert", "sid"])
def test_token_level_methods_reject_different_tokenizers(name):
    raw = {"relation_heads": 4} if name == "minilmv2" else {}
    with pytest.raises(IncompatibleError, match="tokenize differently"):
        make(name, **raw).setup(Pair(shape(), shape(layers=2), same_tokenizer=False))


@pytest.mark.parametrize(
    ("name", "raw", "teacher", "student", "fragments"),
    [
        ("minilm", {}, shape(heads=12, hidden=48), shape(heads=4, hidden=48), ["12 heads", "4", "minilmv2"]),
        ("minilmv2", {}, shape(hidden=64), shape(hidden=32), ["divisible", "relation_heads=48", "64"]),
        ("minilmv2", {"relation_heads": 8}, shape(hidden=32), shape(hidden=12), ["student", "12", "relation_heads=8"]),
        ("minilmv2", {"relation_heads": 4, "teacher_layer": 5}, shape(layers=4), shape(), ["teacher_layer 5"]),
        ("minilmv2", {"relation_heads": 4, "teacher_layer": 0}, shape(layers=4), shape(), ["teacher_layer 0"]),
        ("minilmv2", {"relation_heads": 4, "teacher_layer": -5}, shape(layers=4), shape(), ["teacher_layer -5"]),
        ("pkd", {}, shape(hidden=48), shape(hidden=32), ["widths differ", "48", "32"]),
        ("pkd", {}, shape(layers=4), shape(layers=1), ["at least 2 layers"]),
        ("tinybert", {}, shape(heads=12, hidden=48), shape(heads=4, hidden=48), ["head counts", "12", "4"]),
        ("tinybert", {"parts": ["prediction"]}, shape(), shape(), ["classifier"]),
        ("mobilebert", {}, shape(hidden=48), shape(hidden=32), ["widths", "48", "32"]),
        ("mobilebert", {}, shape(heads=8), shape(heads=4), ["head counts", "8", "4"]),
        ("alp_kd", {}, shape(hidden=48), shape(hidden=32), ["equal widths", "48", "32"]),
        ("sid", {}, shape(heads=8), shape(heads=4), ["head counts", "8", "4"]),
        ("sid", {}, shape(hidden=48, heads=4), shape(hidden=32, heads=4), ["widths", "48", "32"]),
        ("rail_kd", {}, shape(layers=4), shape(layers=1), ["2+ layers"]),
        ("rail_kd", {}, shape(layers=2), shape(layers=4), ["deeper teacher"]),
        ("annealing_kd", {}, shape("embedding"), shape("classifier", labels=2), ["classifier logits"]),
        ("continuation_kd", {}, shape("classifier", labels=2), shape("embedding"), ["classifier logits"]),
    ],
)
def test_setup_rejects_impossible_pairs_with_a_clear_message(name, raw, teacher, student, fragments):
    with pytest.raises(IncompatibleError) as info:
        make(name, **raw).setup(Pair(teacher, student, True))
    message = str(info.value)
    assert message.startswith(name), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("name", "raw", "teacher", "student"),
    [
        ("minilm", {}, shape(hidden=64, layers=6), shape(hidden=32, layers=2)),  # widths/depths may differ
        ("minilmv2", {"relation_heads": 16}, shape(hidden=64, heads=8), shape(hidden=32, heads=4)),
        ("minilmv2", {"relation_heads": 4, "teacher_layer": -4}, shape(layers=4), shape()),
        ("pkd", {"strategy": "last"}, shape(layers=12), shape(layers=6)),
        ("tinybert", {"parts": ["hidden", "embedding"]}, shape(heads=8), shape(heads=4)),
        ("ckd", {}, shape(hidden=64, heads=8), shape(hidden=32, heads=2)),
        ("sid", {}, shape(layers=6), shape(layers=3)),
        ("mobilebert", {"progressive": True}, shape(layers=8), shape(layers=4)),
        ("alp_kd", {}, shape(layers=6), shape(layers=2)),
        ("annealing_kd", {}, shape("classifier", labels=2), shape("classifier", labels=2)),
        ("continuation_kd", {}, shape("classifier", labels=2), shape("classifier", labels=2)),
    ],
)
def test_setup_accepts_possible_pairs(name, raw, teacher, student):
    method = make(name, **raw)
    method.setup(Pair(teacher, student, True))
    # accepted means usable: a finite, differentiable loss on views of exactly these shapes
    batch = Batch({"attention_mask": torch.ones(2, 5)}, [], torch.arange(2), labels=torch.tensor([0, 1]))
    t_views, s_views = random_views(teacher, seed=1), random_views(student, seed=2, grad=True)
    loss = method(t_views, s_views, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.requires_grad


def random_views(model: ModelShape, seed: int, batch: int = 2, tokens: int = 5, grad: bool = False) -> Views:
    """Every view a method may read, random, shaped as ``model`` would produce them."""
    generator = torch.Generator().manual_seed(seed)
    head_dim = model.hidden_size // model.num_heads

    def rand(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator).requires_grad_(grad)

    per_head = [(batch, model.num_heads, tokens, head_dim)] * model.num_layers
    return Views(
        attention_mask=torch.ones(batch, tokens),
        logits=rand(batch, model.num_labels) if model.num_labels else None,
        embedding=rand(batch, model.hidden_size),
        hidden_states=tuple(rand(batch, tokens, model.hidden_size) for _ in range(model.num_layers + 1)),
        attentions=tuple(
            torch.softmax(rand(batch, model.num_heads, tokens, tokens), -1) for _ in range(model.num_layers)
        ),
        queries=tuple(rand(*size) for size in per_head),
        keys=tuple(rand(*size) for size in per_head),
        values=tuple(rand(*size) for size in per_head),
    )


def test_minilmv2_teacher_layer_numbering():
    for layer, index in ((1, 0), (3, 2), (4, 3), (-1, -1), (-4, -4)):
        method = make("minilmv2", relation_heads=4, teacher_layer=layer)
        method.setup(Pair(shape(layers=4), shape(), True))
        assert method.relation_layer == index
        assert list(range(4))[index] == (layer - 1 if layer > 0 else 4 + layer)


def test_pkd_setup_keeps_the_patient_layer_map():
    method = make("pkd", strategy="last")
    method.setup(Pair(shape(layers=12), shape(layers=6), True))
    assert method.layer_map == [(7, 1), (8, 2), (9, 3), (10, 4), (11, 5)]
    assert list(method.parameters()) == []


@pytest.mark.parametrize("strategy", ["skip", "last"])
def test_pkd_rejects_a_student_deeper_than_the_teacher(strategy):
    method = make("pkd", strategy=strategy)
    with pytest.raises(IncompatibleError, match="pkd"):
        method.setup(Pair(shape(layers=4), shape(layers=6), True))


def trainable(method) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in method.parameters() if p.requires_grad]


def test_rail_kd_learns_projections_on_both_sides():
    method = make("rail_kd", projection_size=16)
    method.setup(Pair(shape(layers=6, hidden=48), shape(layers=3, hidden=32), True))
    assert method.count == 2
    # concatenated: 2 student layers x 32 -> 16, 2 teacher layers x 48 -> 16 (weight and bias)
    assert sorted(trainable(method)) == sorted([(16, 64), (16,), (16, 96), (16,)])
    per_layer = make("rail_kd", projection_size=16, concatenated=False)
    per_layer.setup(Pair(shape(layers=6, hidden=48), shape(layers=3, hidden=32), True))
    assert sorted(trainable(per_layer)) == sorted([(16, 32), (16,)] * 2 + [(16, 48), (16,)] * 2)


def test_universal_kd_learns_one_bias_free_projection_per_layer():
    method = make("universal_kd", projection_size=8)
    method.setup(Pair(shape(layers=4, hidden=48), shape(layers=2, hidden=32), True))
    assert sorted(trainable(method)) == sorted([(8, 32)] * 2 + [(8, 48)] * 4)
    default = make("universal_kd")
    default.setup(Pair(shape(layers=4, hidden=48), shape(layers=2, hidden=32), True))
    assert sorted(trainable(default)) == sorted([(32, 32)] * 2 + [(32, 48)] * 4)


@pytest.mark.parametrize("name", ["lrc_bert", "tinybert"])
def test_width_projection_is_learned_only_when_widths_differ(name):
    method = make(name)
    method.setup(Pair(shape(hidden=48), shape(hidden=32, layers=2), True))
    assert isinstance(method.proj, nn.Linear)
    assert trainable(method) == [(48, 32)]
    same = make(name)
    same.setup(Pair(shape(hidden=32), shape(hidden=32, layers=2), True))
    assert isinstance(same.proj, nn.Identity)
    assert trainable(same) == []


@pytest.mark.parametrize("name", ["minilm", "minilmv2", "pkd", "ckd", "sid", "mobilebert", "alp_kd"])
def test_parameter_free_methods_learn_nothing(name):
    raw = {"relation_heads": 4} if name == "minilmv2" else {}
    method = make(name, **raw)
    method.setup(Pair(shape(layers=4), shape(layers=2), True))
    assert trainable(method) == []


# ---------------------------------------------------------------- forward wiring


def batch(step: int = 0, total: int = 1, epoch: int = 0, seed: int = 0) -> Batch:
    return Batch(
        student_inputs={},
        teacher_inputs=None,
        index=torch.arange(2),
        step=step,
        total_steps=total,
        epoch=epoch,
        seed=seed,
    )


def hidden_views(layers: int, width: int, seed: int, mask: torch.Tensor) -> Views:
    states = tuple(pad_with_huge(randn(2, 3, width, seed=seed + i), mask) for i in range(layers + 1))
    return Views(attention_mask=mask, hidden_states=states)


def test_pkd_forward_compares_cls_of_the_patient_layers():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    teacher, student = hidden_views(6, 4, 10, mask), hidden_views(3, 4, 50, mask)
    method = make("pkd", strategy="skip")
    method.setup(Pair(shape(layers=6, hidden=4, heads=1), shape(layers=3, hidden=4, heads=1), True))
    assert method.layer_map == [(2, 1), (4, 2)]
    expected = 0.0
    for t, s in method.layer_map:
        rows = zip(student.hidden_states[s][:, 0].tolist(), teacher.hidden_states[t][:, 0].tolist(), strict=True)
        expected += mean([sum(d * d for d in sub(unit(a), unit(b))) for a, b in rows])
    assert method(teacher, student, batch()).item() == pytest.approx(expected, rel=1e-5)


def test_minilmv2_forward_uses_the_chosen_teacher_layer_and_the_student_last():
    mask = torch.tensor([[1, 1, 1], [1, 1, 1]])
    t_layers = [randn(2, 2, 3, 2, seed=i) for i in range(3)]
    s_last = split_heads(t_layers[1], 1)  # the student's last layer holds teacher layer 2, 1 head of 4
    teacher = Views(mask, queries=tuple(t_layers), keys=tuple(t_layers), values=tuple(t_layers))
    s_first = randn(2, 1, 3, 4, seed=9)
    student = Views(mask, queries=(s_first, s_last), keys=(s_first, s_last), values=(s_first, s_last))
    method = make("minilmv2", relation_heads=2, teacher_layer=2)
    method.setup(Pair(shape(layers=3, hidden=4, heads=2), shape(layers=2, hidden=4, heads=1), True))
    assert method(teacher, student, batch()).item() == 0.0
    last = make("minilmv2", relation_heads=2)
    last.setup(Pair(shape(layers=3, hidden=4, heads=2), shape(layers=2, hidden=4, heads=1), True))
    assert last(teacher, student, batch()).item() > 0


def test_alp_kd_forward_uses_cls_of_layers_1_to_n():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    teacher, student = hidden_views(3, 4, 1, mask), hidden_views(2, 4, 20, mask)
    method = make("alp_kd")
    method.setup(Pair(shape(layers=3, hidden=4), shape(layers=2, hidden=4), True))
    expected = 0.0
    for i in (1, 2):
        squares = []
        for b in range(2):
            s = student.hidden_states[i][b, 0].tolist()
            layers = [teacher.hidden_states[j][b, 0].tolist() for j in (1, 2, 3)]
            eps = softmax([dot(s, t) for t in layers])
            squares += [(s[d] - sum(eps[j] * layers[j][d] for j in range(3))) ** 2 for d in range(4)]
        expected += mean(squares)
    assert method(teacher, student, batch()).item() == pytest.approx(expected, rel=1e-5)


def test_rail_kd_forward_is_deterministic_per_epoch_and_differentiable():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    teacher, student = hidden_views(8, 6, 1, mask), hidden_views(3, 4, 30, mask)
    torch.manual_seed(0)
    method = make("rail_kd", projection_size=5)
    method.setup(Pair(shape(layers=8, hidden=6), shape(layers=3, hidden=4), True))
    first = method(teacher, student, batch(epoch=0, seed=1))
    assert torch.isfinite(first) and first.item() > 0
    assert method(teacher, student, batch(epoch=0, seed=1, step=5, total=10)).item() == first.item()
    values = {round(method(teacher, student, batch(epoch=e, seed=1)).item(), 6) for e in range(6)}
    assert len(values) > 1  # the teacher layers are redrawn across epochs
    first.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.parameters())


def test_universal_kd_mean_pooling_ignores_padding():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    teacher, student = hidden_views(2, 6, 1, mask), hidden_views(2, 4, 30, mask)
    torch.manual_seed(0)
    method = make("universal_kd", pooling="mean", projection_size=3)
    method.setup(Pair(shape(layers=2, hidden=6), shape(layers=2, hidden=4), True))
    loss = method(teacher, student, batch())
    assert torch.isfinite(loss)
    # changing what the padded position holds changes nothing
    changed = Views(mask, hidden_states=tuple(h.clone() for h in student.hidden_states))
    for h in changed.hidden_states:
        h[1, 2] = 123.0
    assert method(teacher, changed, batch()).item() == pytest.approx(loss.item(), rel=1e-6)
