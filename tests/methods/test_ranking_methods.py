"""Ranking methods (margin_mse, kl_listwise, virt): hand-computed losses, setup checks, short runs."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertModel

from kdforge.engine.collate import Collator
from kdforge.engine.pipeline import shape
from kdforge.engine.trainer import train
from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, ModelShape, Pair
from kdforge.methods.kl_listwise import kl_listwise_loss
from kdforge.methods.margin_mse import margin_mse_loss
from kdforge.methods.ranking import bi_encoder_scores, cross_encoder_scores
from kdforge.methods.virt import cross_block, first_positions, interaction_mse, virt_loss, virtual_attention
from kdforge.models import load_model
from kdforge.models.text_model import TextModel
from kdforge.recipe import TaskSpec, TrainingSpec
from kdforge.recipe.schema import DataSource
from kdforge.tasks import TASKS
from tests.conftest import bert_config, make_tokenizer, ranking_rows

CROSS_ENCODER = ModelShape("classifier", 4, 32, 4, 1, 32, output_size=1)
BI_ENCODER = ModelShape("embedding", 2, 32, 4, None, 32)


# ----- scores ---------------------------------------------------------------------------------
def test_cross_encoder_and_bi_encoder_scores_by_hand():
    assert cross_encoder_scores(torch.tensor([[2.0], [-1.0]])).tolist() == [2.0, -1.0]
    assert cross_encoder_scores(torch.tensor([[1.0, 3.0]])).tolist() == [2.0]  # relevant minus irrelevant
    with pytest.raises(ValueError, match="1 or 2 labels, not 3"):
        cross_encoder_scores(torch.zeros(1, 3))
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    passages = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, -1.0]])  # 2 per query
    assert bi_encoder_scores(queries, passages, "dot").tolist() == [[2.0, 0.0], [2.0, -2.0]]
    cosine = bi_encoder_scores(queries, passages, "cosine", scale=20.0)
    assert cosine.flatten().tolist() == pytest.approx([20.0, 0.0, 20 / math.sqrt(2), -20.0])


def test_score_scale_defaults_to_20_for_cosine_and_1_for_dot():
    cls = METHODS.get("margin_mse")
    assert cls.parse_args({}).factor == 20.0
    assert cls.parse_args({"similarity": "dot"}).factor == 1.0
    assert cls.parse_args({"similarity": "dot", "scale": 0.5}).factor == 0.5


# ----- margin_mse -----------------------------------------------------------------------------
def test_margin_mse_by_hand():
    student = torch.tensor([[3.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    # margins: student [2, 1] and [0, 0]; teacher [1, 2] and [1, 0]
    assert margin_mse_loss(student, teacher).item() == pytest.approx((1 + 1 + 1 + 0) / 4)


def test_margin_mse_is_zero_for_equal_scores_and_ignores_an_offset():
    teacher = torch.tensor([[4.0, -1.0, 0.5], [2.0, 2.5, -3.0]])
    assert margin_mse_loss(teacher.clone(), teacher).item() == 0.0
    assert margin_mse_loss(teacher + 7.0, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert margin_mse_loss(2 * teacher, teacher).item() > 0  # the scale does count


# ----- kl_listwise ----------------------------------------------------------------------------
def test_kl_listwise_by_hand():
    student = torch.tensor([[1.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0, 0.0]])
    temperature = 2.0

    def softmax(xs):
        e = [math.exp(x / temperature) for x in xs]
        return [x / sum(e) for x in e]

    p, q = softmax([0.0, 1.0, 0.0]), softmax([1.0, 0.0, 0.0])
    expected = temperature**2 * sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert kl_listwise_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)
    # averaged over queries (batchmean)
    both = kl_listwise_loss(torch.cat([student, teacher]), torch.cat([teacher, teacher]), temperature)
    assert both.item() == pytest.approx(expected / 2, rel=1e-5)


def test_kl_listwise_is_zero_for_equal_scores():
    scores = torch.tensor([[3.0, -1.0, 0.2, 0.0], [0.0, 0.0, 5.0, 1.0]])
    assert kl_listwise_loss(scores.clone(), scores, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_listwise_loss(scores + 3.0, scores, 1.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax shift


# ----- virt -----------------------------------------------------------------------------------
def test_first_positions_in_order():
    mask = torch.tensor([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert first_positions(mask, 3)[0].tolist() == [1, 3, 4]
    assert first_positions(mask, 3)[1, 0].item() == 0


def test_virtual_attention_by_hand():
    queries = torch.tensor([[[[1.0, 0.0]]]])  # [R=1, H=1, Na=1, d=2]
    keys = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]]])
    mask = torch.tensor([[True, True, False]])  # the third key is padding
    a = math.exp(1 / math.sqrt(2))
    assert virtual_attention(queries, keys, mask)[0, 0, 0].tolist() == pytest.approx([a / (a + 1), 1 / (a + 1), 0])


def test_cross_block_renormalises_over_the_other_text():
    attention = torch.tensor([[[[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25] * 4, [0.5, 0.5, 0, 0]]]])
    rows, cols = torch.tensor([[0, 1]]), torch.tensor([[2, 3]])
    block = cross_block(attention, rows, cols, torch.tensor([[True, True]]))
    assert block[0, 0].flatten().tolist() == pytest.approx([0.3 / 0.7, 0.4 / 0.7, 2 / 3, 1 / 3])
    only_first = cross_block(attention, rows, cols, torch.tensor([[True, False]]))
    assert only_first[0, 0, :, 0].tolist() == pytest.approx([1.0, 1.0])


def test_interaction_mse_and_virt_loss_by_hand():
    student = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # [1, 1, 2 rows, 2 columns]
    teacher = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    rows, cols = torch.tensor([[True, True]]), torch.tensor([[True, True]])
    # row 0: 0.25 + 0.25; row 1: 0 -> mean over rows 0.25
    assert interaction_mse(student, teacher, rows, cols).item() == pytest.approx(0.25)
    assert interaction_mse(student, teacher, torch.tensor([[True, False]]), cols).item() == pytest.approx(0.5)
    assert interaction_mse(teacher, teacher, rows, cols).item() == 0.0
    # both directions of one layer, the passage side with one row
    back_s, back_t = torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[1.0, 0.0]]]])
    loss = virt_loss([(student, back_s)], [(teacher, back_t)], rows, torch.tensor([[True]]))
    assert loss.item() == pytest.approx(0.25 + 2.0)
    # two student heads against one teacher map: head averages are compared
    two_heads = torch.cat([student, teacher], dim=1)
    averaged = virt_loss([(two_heads, back_s)], [(teacher, back_t)], rows, torch.tensor([[True]]))
    assert averaged.item() == pytest.approx(interaction_mse(student.add(teacher).div(2), teacher, rows, cols) + 2.0)


# ----- setup ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["margin_mse", "kl_listwise", "virt"])
def test_ranking_methods_need_a_cross_encoder_and_a_bi_encoder(name):
    method = METHODS.get(name)()
    method.setup(Pair(CROSS_ENCODER, BI_ENCODER, same_tokenizer=True))
    embedding_teacher = ModelShape("embedding", 4, 32, 4, None, 32)
    with pytest.raises(
        IncompatibleError, match=rf"^{name} needs a cross-encoder teacher .*, not a model of kind embedding"
    ):
        method.setup(Pair(embedding_teacher, BI_ENCODER, same_tokenizer=True))
    three_labels = ModelShape("classifier", 4, 32, 4, 3, 32, output_size=3)
    with pytest.raises(IncompatibleError, match="not a classifier with 3 labels"):
        method.setup(Pair(three_labels, BI_ENCODER, same_tokenizer=True))
    classifier_student = ModelShape("classifier", 2, 32, 4, 1, 32, output_size=1)
    with pytest.raises(IncompatibleError, match="trains a bi-encoder, but the student is a classifier"):
        method.setup(Pair(CROSS_ENCODER, classifier_student, same_tokenizer=True))


def test_virt_says_in_one_line_when_tokenizers_differ():
    with pytest.raises(IncompatibleError) as err:
        METHODS.get("virt")().setup(Pair(CROSS_ENCODER, BI_ENCODER, same_tokenizer=False))
    assert str(err.value) == (
        "virt compares token positions, but the teacher and the student tokenize differently; "
        "use margin_mse or kl_listwise"
    )


def test_virt_views_and_layer_map():
    virt = METHODS.get("virt")
    method = virt()
    assert method.teacher_needs() == {"attentions"} and method.student_needs() == {"qkv"}
    assert virt(virt.parse_args({"interaction": "hidden"})).student_needs() == {"hidden_states"}
    method.setup(Pair(CROSS_ENCODER, BI_ENCODER, same_tokenizer=True))
    assert method.layer_map == [(2, 1), (4, 2)]
    with pytest.raises(IncompatibleError, match="layer 0 is the embedding layer"):
        virt(virt.parse_args({"layer_map": [(0, 0)]})).setup(Pair(CROSS_ENCODER, BI_ENCODER, same_tokenizer=True))
    for name in ("margin_mse", "kl_listwise"):
        cls = METHODS.get(name)
        assert cls().teacher_needs() == {"logits"} and cls().student_needs() == {"embedding"}


# ----- training -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["margin_mse", "kl_listwise", "virt"])
def test_ranking_method_alone_lowers_its_gap(name, cross_encoder_dir, ranking_dir, tmp_path):
    teacher = load_model(str(cross_encoder_dir))
    torch.manual_seed(4)  # a fresh 2-layer encoder, its weights as spread as the teacher's
    student = TextModel(BertModel(bert_config(2, initializer_range=0.5)), make_tokenizer(), "embedding", "mean")
    cls = METHODS.get(name)
    method = cls()
    method.setup(Pair(shape(teacher), shape(student), same_tokenizer=True))
    task = TASKS.get("ranking")(TaskSpec(name="ranking"))
    dataset = task.train_dataset([DataSource.model_validate({"path": str(ranking_dir / "train.jsonl")})])
    held_out = [
        {"text": r["query"], "passages": [r["positive"], *r["negatives"]], "index": i}
        for i, r in enumerate(ranking_rows(16, seed=30))
    ]
    batch = Collator(student, [teacher], task=task)(held_out)

    def gap() -> float:
        student.eval()
        with torch.no_grad():
            views = student(batch.student_inputs, method.student_needs())
            views.candidates = student(batch.candidate_inputs, method.student_needs())
            return float(method(teacher(batch.teacher_inputs[0], method.teacher_needs()), views, batch))

    before = gap()
    training = TrainingSpec(max_steps=40, batch_size=16, lr=3e-3, warmup_ratio=0.0, log_every=100, save_every=1000)
    train(student, [teacher], [method], [1.0], dataset, training, tmp_path, seed=0, fingerprint=name, task=task)
    after = gap()
    assert after < 0.8 * before, (before, after)
