"""The pure loss functions, reductions and layer maps against values worked out by hand.

Expected values are computed here with plain Python (``math``) and explicit loops, never with
the same torch call the implementation uses, so a wrong reduction, direction or scaling shows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from kdforge.errors import IncompatibleError
from kdforge.methods.attention import attention_mse_loss
from kdforge.methods.ce import ce_loss
from kdforge.methods.cosine import cosine_loss
from kdforge.methods.embedding_mse import embedding_mse_loss
from kdforge.methods.hidden_mse import hidden_mse_loss
from kdforge.methods.kd import kd_loss
from kdforge.methods.layer_map import check_map, uniform_map
from kdforge.methods.reduce import masked_mean
from kdforge.models.internals import attention_scores, record_qkv
from tests.conftest import bert_config

HUGE = 1.0e6  # what padded positions hold: must not leak into any masked loss


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(z / temperature) for z in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


# ---------------------------------------------------------------- kd_loss


STUDENT_LOGITS = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
TEACHER_LOGITS = [[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]


def hand_kd(student, teacher, temperature):
    """T^2 * mean over rows of KL(p_teacher || p_student), both softened at T."""
    per_row = [kl(softmax(t, temperature), softmax(s, temperature)) for s, t in zip(student, teacher, strict=True)]
    return temperature**2 * sum(per_row) / len(per_row)


def test_kd_loss_matches_hand_computed_kl_at_temperature_2():
    got = kd_loss(torch.tensor(STUDENT_LOGITS), torch.tensor(TEACHER_LOGITS), temperature=2.0)
    # Row 1 by hand: teacher [3,1,0]/2 -> exp [e^1.5, e^0.5, 1]; student [1,2,3]/2 -> [e^.5, e^1, e^1.5].
    expected = hand_kd(STUDENT_LOGITS, TEACHER_LOGITS, 2.0)
    assert got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_is_teacher_to_student_kl_not_the_reverse():
    # A peaked teacher and a flat student: the two KL directions differ a lot.
    student, teacher = [[0.0, 0.0, 0.0]], [[6.0, 0.0, 0.0]]
    forward = hand_kd(student, teacher, 2.0)
    reverse = 4.0 * kl(softmax(student[0], 2.0), softmax(teacher[0], 2.0))
    assert abs(forward - reverse) > 0.5
    got = kd_loss(torch.tensor(student), torch.tensor(teacher), temperature=2.0).item()
    assert got == pytest.approx(forward, rel=1e-5)
    assert got != pytest.approx(reverse, rel=1e-2)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_is_scaled_by_temperature_squared(temperature):
    s, t = torch.tensor(STUDENT_LOGITS), torch.tensor(TEACHER_LOGITS)
    unscaled_kl = hand_kd(STUDENT_LOGITS, TEACHER_LOGITS, temperature) / temperature**2
    got = kd_loss(s, t, temperature).item()
    assert got / unscaled_kl == pytest.approx(temperature**2, rel=1e-5)


def test_kd_loss_averages_over_the_batch_not_over_classes():
    one_row = kd_loss(torch.tensor(STUDENT_LOGITS[:1]), torch.tensor(TEACHER_LOGITS[:1]), 2.0).item()
    doubled = kd_loss(torch.tensor(STUDENT_LOGITS[:1] * 2), torch.tensor(TEACHER_LOGITS[:1] * 2), 2.0).item()
    assert doubled == pytest.approx(one_row, rel=1e-6)
    by_hand = 4.0 * kl(softmax(TEACHER_LOGITS[0], 2.0), softmax(STUDENT_LOGITS[0], 2.0))
    assert one_row == pytest.approx(by_hand, rel=1e-5)


def test_kd_loss_reads_half_precision_logits_in_float32():
    s, t = torch.tensor(STUDENT_LOGITS), torch.tensor(TEACHER_LOGITS)
    got = kd_loss(s.half(), t.half(), 2.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(hand_kd(STUDENT_LOGITS, TEACHER_LOGITS, 2.0), rel=1e-3)


# ---------------------------------------------------------------- ce_loss


def test_ce_loss_is_mean_negative_log_probability_of_the_label():
    logits = [[2.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0]]
    labels = [0, 2, 1]
    expected = sum(-math.log(softmax(row)[y]) for row, y in zip(logits, labels, strict=True)) / 3
    got = ce_loss(torch.tensor(logits), torch.tensor(labels))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The uniform row alone is -log(1/3).
    assert ce_loss(torch.tensor(logits[2:]), torch.tensor(labels[2:])).item() == pytest.approx(math.log(3), rel=1e-6)


def test_ce_loss_with_label_smoothing():
    logits, labels, eps = [[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]], [0, 2], 0.1
    expected = 0.0
    for row, y in zip(logits, labels, strict=True):
        nll = [-math.log(p) for p in softmax(row)]
        expected += (1 - eps) * nll[y] + eps * sum(nll) / len(nll)
    expected /= len(logits)
    got = ce_loss(torch.tensor(logits), torch.tensor(labels), label_smoothing=eps)
    assert got.item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- masked_mean


def test_masked_mean_over_tokens():
    values = torch.tensor([[1.0, 2.0, HUGE], [4.0, HUGE, HUGE]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx((1 + 2 + 4) / 3)


def test_masked_mean_over_tokens_and_features():
    # [B=2, T=2, H=3]; the second example's second token is padding.
    values = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[7.0, 8.0, 9.0], [HUGE, HUGE, HUGE]]])
    mask = torch.tensor([[1, 1], [1, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(sum(range(1, 10)) / 9)


def test_masked_mean_accepts_a_boolean_mask():
    values = torch.tensor([[1.0, 3.0, HUGE]])
    assert masked_mean(values, torch.tensor([[True, True, False]])).item() == pytest.approx(2.0)


def test_masked_mean_of_an_all_padding_batch_is_zero_not_nan():
    got = masked_mean(torch.ones(2, 3, 4), torch.zeros(2, 3))
    assert got.item() == 0.0


# ---------------------------------------------------------------- hidden_mse_loss


def test_hidden_mse_loss_sums_layers_and_ignores_padding():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    student = [
        torch.tensor([[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]),
        torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]]),
    ]
    teacher = [
        torch.tensor([[[0.0, 2.0], [1.0, 1.0], [HUGE, -HUGE]], [[3.0, 1.0], [HUGE, HUGE], [-HUGE, HUGE]]]),
        torch.tensor([[[1.0, 1.0], [1.0, 1.0], [HUGE, HUGE]], [[0.0, 4.0], [-HUGE, HUGE], [HUGE, HUGE]]]),
    ]
    # Real tokens: (0,0), (0,1), (1,0); 3 tokens x 2 features = 6 numbers per layer.
    # Layer 1 squared diffs: (1,0) (4,9) (9,0) -> 23 / 6.  Layer 2: (1,1) (0,0) (4,4) -> 10 / 6.
    got = hidden_mse_loss(student, teacher, mask)
    assert got.item() == pytest.approx(23 / 6 + 10 / 6, rel=1e-6)


def test_hidden_mse_loss_projects_the_student_before_comparing():
    mask = torch.tensor([[1, 0]])
    hs = [torch.tensor([[[1.0, 2.0], [HUGE, HUGE]]])]
    ht = [torch.tensor([[[1.0, 2.0, 3.0], [HUGE, HUGE, HUGE]]])]
    project = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        project.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))  # [a, b, a + b]
    assert hidden_mse_loss(hs, ht, mask, project).item() == pytest.approx(0.0)
    with torch.no_grad():
        project.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))  # [2a, b, 0]
    # diffs (2-1, 2-2, 0-3) -> (1 + 0 + 9) / 3
    assert hidden_mse_loss(hs, ht, mask, project).item() == pytest.approx(10 / 3)


# ---------------------------------------------------------------- attention_mse_loss


def hand_attention_mse(a_s, a_t, mask):
    """Explicit loops: mean of squared differences over heads and real (query, key) pairs."""
    total, count = 0.0, 0
    for b in range(len(a_s)):
        for h in range(len(a_s[b])):
            for i in range(len(mask[b])):
                for j in range(len(mask[b])):
                    if mask[b][i] and mask[b][j]:
                        total += (a_s[b][h][i][j] - a_t[b][h][i][j]) ** 2
                        count += 1
    return total / count


def test_attention_mse_loss_ignores_masked_query_and_key_pairs():
    g = torch.Generator().manual_seed(0)
    mask = [[1, 1, 1], [1, 1, 0]]
    a_s = torch.randn(2, 2, 3, 3, generator=g)
    a_t = torch.randn(2, 2, 3, 3, generator=g)
    # Padding in example 1 is position 2: its row (query) and column (key) must not count.
    a_t[1, :, 2, :] = HUGE
    a_t[1, :, :, 2] = -HUGE
    expected = hand_attention_mse(a_s.tolist(), a_t.tolist(), mask)
    got = attention_mse_loss([a_s], [a_t], torch.tensor(mask))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_attention_mse_loss_on_a_tiny_explicit_example():
    # One example, one head, 2 tokens of which the second is padding: only pair (0, 0) counts.
    a_s = torch.tensor([[[[0.25, 7.0], [7.0, 7.0]]]])
    a_t = torch.tensor([[[[0.75, -HUGE], [HUGE, 0.0]]]])
    got = attention_mse_loss([a_s], [a_t], torch.tensor([[1, 0]]))
    assert got.item() == pytest.approx(0.25)


def test_attention_mse_loss_sums_over_layers_and_averages_over_heads():
    mask = torch.tensor([[1, 1]])
    zeros = torch.zeros(1, 2, 2, 2)
    one_head_off = zeros.clone()
    one_head_off[0, 0] = 2.0  # head 0 differs by 2 everywhere, head 1 matches
    # Per layer: (4 * 4 pairs in head 0 + 0) / (2 heads * 4 pairs) = 2; two such layers -> 4.
    got = attention_mse_loss([one_head_off, one_head_off], [zeros, zeros], mask)
    assert got.item() == pytest.approx(4.0)


# ---------------------------------------------------------------- embedding_mse_loss


def test_embedding_mse_loss_by_hand():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # squared diffs 1, 0, 4, 9 -> mean over batch and dimensions = 14 / 4
    assert embedding_mse_loss(s, t).item() == pytest.approx(3.5)


def test_embedding_mse_loss_computes_in_float32():
    s = torch.tensor([[300.0, 0.0]], dtype=torch.float16)
    t = torch.tensor([[0.0, 0.0]], dtype=torch.float16)
    # 300^2 / 2 = 45000 is representable, but the squared diff 90000 overflows float16.
    got = embedding_mse_loss(s, t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(45000.0)


# ---------------------------------------------------------------- cosine_loss


def test_cosine_loss_orthogonal_is_one_and_opposite_is_two():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 3.0], [-2.0, -2.0]])
    assert cosine_loss(s[:1], t[:1]).item() == pytest.approx(1.0)
    assert cosine_loss(s[1:], t[1:]).item() == pytest.approx(2.0)
    assert cosine_loss(s, t).item() == pytest.approx(1.5)


def test_cosine_loss_on_an_explicit_angle():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[1.0, math.sqrt(3.0)]])  # 60 degrees apart -> 1 - 0.5
    assert cosine_loss(s, t).item() == pytest.approx(0.5, rel=1e-6)


def test_cosine_loss_ignores_vector_lengths():
    s = torch.tensor([[1.0, 2.0, -1.0]])
    t = torch.tensor([[0.5, 1.0, 2.0]])
    assert cosine_loss(10 * s, 0.1 * t).item() == pytest.approx(cosine_loss(s, t).item(), rel=1e-5)


def test_cosine_loss_with_mask_averages_real_tokens_only():
    # [B=2, T=2, H=2]: real tokens are orthogonal (1) and opposite (2); the padded ones are
    # identical (0) and would pull the mean down to 0.75 if counted.
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, -1.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 0], [1, 0]])
    assert cosine_loss(s, t, mask).item() == pytest.approx(1.5)
    assert cosine_loss(s, t).item() == pytest.approx(0.75)


# ---------------------------------------------------------------- identical inputs


def test_identical_inputs_give_zero():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=g) * 3
    hidden = [torch.randn(2, 6, 8, generator=g) for _ in range(3)]
    maps = [torch.randn(2, 4, 6, 6, generator=g) for _ in range(2)]
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    embedding = torch.randn(3, 8, generator=g)

    for temperature in (1.0, 2.0, 5.0):
        assert kd_loss(logits, logits.clone(), temperature).item() == 0.0
    assert hidden_mse_loss(hidden, [h.clone() for h in hidden], mask).item() == 0.0
    assert attention_mse_loss(maps, [m.clone() for m in maps], mask).item() == 0.0
    assert embedding_mse_loss(embedding, embedding.clone()).item() == 0.0
    # 1 - cos(x, x) is zero up to float32 rounding of the norms (about 1e-8), not bit-exact.
    assert cosine_loss(embedding, embedding.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_loss(hidden[0], hidden[0].clone(), mask).item() == pytest.approx(0.0, abs=1e-6)


def test_losses_are_positive_and_differentiable_when_inputs_differ():
    g = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 0]])
    cases = {
        "kd": lambda x: kd_loss(x.view(3, 4), torch.randn(3, 4, generator=g), 2.0),
        "hidden_mse": lambda x: hidden_mse_loss([x.view(1, 3, 4)], [torch.randn(1, 3, 4, generator=g)], mask),
        "embedding_mse": lambda x: embedding_mse_loss(x.view(3, 4), torch.randn(3, 4, generator=g)),
        "cosine": lambda x: cosine_loss(x.view(1, 3, 4), torch.randn(1, 3, 4, generator=g), mask),
    }
    for name, loss_fn in cases.items():
        x = torch.randn(12, generator=g, requires_grad=True)
        loss = loss_fn(x)
        assert loss.item() > 0, name
        loss.backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- layer maps


def test_uniform_map_12_to_4():
    assert uniform_map(12, 4) == [(3, 1), (6, 2), (9, 3), (12, 4)]


def test_uniform_map_include_embeddings_adds_0_0_first():
    assert uniform_map(12, 4, include_embeddings=True) == [(0, 0), (3, 1), (6, 2), (9, 3), (12, 4)]


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
        (4, 2, [(2, 1), (4, 2)]),
        (12, 6, [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5), (12, 6)]),
        (6, 1, [(6, 1)]),
    ],
)
def test_uniform_map_examples(teacher, student, expected):
    assert uniform_map(teacher, student) == expected


@pytest.mark.parametrize(("teacher", "student"), [(12, 4), (12, 5), (6, 4), (24, 7), (4, 3), (12, 12)])
def test_uniform_map_covers_each_student_layer_once_and_ends_at_the_top(teacher, student):
    pairs = uniform_map(teacher, student)
    assert [s for _, s in pairs] == list(range(1, student + 1))
    assert pairs[-1] == (teacher, student)
    teacher_layers = [t for t, _ in pairs]
    assert all(1 <= t <= teacher for t in teacher_layers)
    assert teacher_layers == sorted(set(teacher_layers))  # strictly increasing


def test_check_map_accepts_a_valid_map_unchanged():
    layer_map = [(0, 0), (6, 2), (12, 4)]
    assert check_map(layer_map, 12, 4, "hidden_mse") == layer_map


@pytest.mark.parametrize(
    ("layer_map", "fragments"),
    [
        ([(13, 4)], ["hidden_mse", "teacher layer 13", "0..12"]),
        ([(-1, 1)], ["hidden_mse", "teacher layer -1", "0..12"]),
        ([(12, 5)], ["hidden_mse", "student layer 5", "0..4"]),
        ([(3, 1), (6, -2)], ["hidden_mse", "student layer -2", "0..4"]),
    ],
)
def test_check_map_rejects_out_of_range_layers(layer_map, fragments):
    with pytest.raises(IncompatibleError) as info:
        check_map(layer_map, 12, 4, "hidden_mse")
    for fragment in fragments:
        assert fragment in str(info.value)


# ---------------------------------------------------------------- attention scores from a real model


@pytest.fixture(scope="module")
def tiny_bert_run():
    """A tiny eager-attention BERT run on a padded batch with Q/K/V recorded."""
    from transformers import BertModel

    torch.manual_seed(0)
    config = bert_config(layers=3, hidden=32, heads=4)
    model = BertModel(config).eval()
    model.set_attn_implementation("eager")
    input_ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad(), record_qkv(model) as record:
        out = model(input_ids=input_ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    return model, config, mask, record, out


def test_record_qkv_records_every_layer_split_into_heads(tiny_bert_run):
    model, config, mask, record, out = tiny_bert_run
    assert set(record) == {"queries", "keys", "values"}
    for name in ("queries", "keys", "values"):
        assert len(record[name]) == config.num_hidden_layers
        for tensor in record[name]:
            assert tensor.shape == (2, config.num_attention_heads, 6, config.hidden_size // config.num_attention_heads)
    # The hooks are removed on exit: a second forward records nothing more.
    with torch.no_grad():
        model(input_ids=torch.tensor([[2, 3]]))
    assert len(record["queries"]) == config.num_hidden_layers


def test_recorded_queries_are_block_i_projections_of_hidden_state_i(tiny_bert_run):
    model, config, mask, record, out = tiny_bert_run
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    for i, layer in enumerate(model.encoder.layer):
        with torch.no_grad():
            q = layer.attention.self.query(out.hidden_states[i])  # block i+1 reads hidden_states[i]
        expected = q.view(2, 6, heads, head_dim).permute(0, 2, 1, 3)
        assert_close(record["queries"][i], expected)


def test_attention_scores_are_the_pre_softmax_logits_of_the_model(tiny_bert_run):
    model, config, mask, record, out = tiny_bert_run
    assert len(out.attentions) == config.num_hidden_layers
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(config.num_hidden_layers):
        scores = attention_scores(record["queries"][i], record["keys"][i])
        probs = torch.softmax(scores + additive, dim=-1)
        assert_close(probs, out.attentions[i], atol=1e-5, rtol=0)
        # Padded keys get no attention; each real query's row sums to 1.
        assert out.attentions[i][1, :, :, 4:].abs().max() < 1e-6


def test_attention_scores_by_hand():
    q = torch.tensor([[[[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]]])  # [1, 1, 2, 4]
    k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]]])
    # Q K^T = [[2, 1], [2, 10]], divided by sqrt(4) = 2.
    assert_close(attention_scores(q, k), torch.tensor([[[[1.0, 0.5], [1.0, 5.0]]]]))
