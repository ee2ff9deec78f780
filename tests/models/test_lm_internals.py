"""Views of language models: hidden states, attention maps and Q/K/V of GPT-2 and RoBERTa heads."""

from __future__ import annotations

import pytest
import torch

from kdforge.models import build_student, load_model
from kdforge.models.internals import attention_scores, block_list
from kdforge.recipe import StudentSpec
from tests.conftest import make_tokenizer
from tests.language_models import causal_lm_folder

ALL = frozenset({"hidden_states", "attentions", "qkv", "logits"})
TEXTS = ["the cat sees a dog .", "a bird ."]  # the second is padded


def roberta_folder(folder):
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(make_tokenizer()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=70,
        pad_token_id=0,
    )
    RobertaForMaskedLM(config).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def check_views(model, causal: bool) -> None:
    inputs = model.tokenize(TEXTS)
    views = model(inputs, ALL)  # attention maps even though the model loads with SDPA
    length = inputs["input_ids"].shape[1]
    assert len(views.hidden_states) == 3 and views.hidden_states[-1].shape == (2, length, 32)
    assert len(views.attentions) == 2 and views.attentions[0].shape == (2, 4, length, length)
    assert len(views.queries) == len(views.keys) == len(views.values) == 2
    assert views.queries[1].shape == (2, 4, length, 8)
    assert views.logits.shape == (2, length, len(model.tokenizer))
    # the recorded projections reproduce the model's own attention probabilities
    scores = attention_scores(views.queries[0], views.keys[0])
    allowed = inputs["attention_mask"][:, None, None, :].bool()
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool).tril()
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(
        probs[real[:, None, :, None].expand_as(probs)], views.attentions[0][real[:, None, :, None].expand_as(probs)]
    )


def test_gpt2_lm_head_model_views(tmp_path):
    model = load_model(str(causal_lm_folder(tmp_path / "gpt2")))
    assert model.kind == "causal_lm" and block_list(model.hf)[0] == "transformer.h"
    with torch.no_grad():
        check_views(model, causal=True)


def test_roberta_masked_lm_views(tmp_path):
    model = load_model(str(roberta_folder(tmp_path / "roberta")))
    assert model.kind == "masked_lm" and block_list(model.hf)[0] == "roberta.encoder.layer"
    with torch.no_grad():
        check_views(model, causal=False)


@pytest.mark.parametrize("layers", [[1], [0, 1]])
def test_gpt2_student_keeps_its_tied_head(tmp_path, layers):
    teacher = load_model(str(causal_lm_folder(tmp_path / "gpt2")))
    student, report = build_student(teacher, StudentSpec(layers=layers))
    assert report.fresh == 0 and student.kind == "causal_lm"
    assert student.hf.lm_head.weight is student.hf.transformer.wte.weight
    if layers == [0, 1]:
        inputs = teacher.tokenize(TEXTS)
        with torch.no_grad():
            torch.testing.assert_close(
                student(inputs, frozenset({"logits"})).logits, teacher(inputs, frozenset({"logits"})).logits
            )
