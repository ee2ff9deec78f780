"""Students cut from their teacher: which blocks, which weights, which shapes."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2Model

from kdforge.errors import ModelError
from kdforge.models import build_student, load_model
from kdforge.models.internals import block_list
from kdforge.models.student import pick_layers
from kdforge.models.text_model import TextModel
from kdforge.recipe import StudentSpec
from tests.conftest import make_tokenizer


def test_pick_layers_spreads_evenly_and_keeps_the_last():
    assert pick_layers(6, 2) == [0, 5]
    assert pick_layers(12, 4) == [0, 4, 7, 11]
    assert pick_layers(6, 1) == [5]
    with pytest.raises(ModelError, match="only 6 blocks"):
        pick_layers(6, 7)


def test_kept_blocks_carry_the_teachers_weights(embedding_teacher_dir):
    teacher = load_model(str(embedding_teacher_dir))
    student, report = build_student(teacher, StudentSpec(layers=[1, 3]))
    assert student.num_layers == 2 and report.kept_blocks == [1, 3] and report.fresh == 0
    t_blocks, s_blocks = block_list(teacher.hf)[1], block_list(student.hf)[1]
    for s_index, t_index in enumerate([1, 3]):
        for (name, s_param), (_, t_param) in zip(
            s_blocks[s_index].named_parameters(), t_blocks[t_index].named_parameters(), strict=True
        ):
            assert torch.equal(s_param, t_param), name
    assert torch.equal(student.hf.embeddings.word_embeddings.weight, teacher.hf.embeddings.word_embeddings.weight)


def test_narrower_student_gets_fresh_weights_and_matching_heads(embedding_teacher_dir):
    teacher = load_model(str(embedding_teacher_dir))  # hidden 32, 4 heads of 8
    student, report = build_student(teacher, StudentSpec(num_layers=2, hidden_size=16))
    assert student.hidden_size == 16 and student.num_heads == 2
    assert student.hf.config.intermediate_size == 32
    assert report.fresh > 0
    assert student.encode(["the cat sees a dog ."]).shape == (1, 16)


def test_bad_shapes_are_reported(embedding_teacher_dir):
    teacher = load_model(str(embedding_teacher_dir))
    with pytest.raises(ModelError, match="out of range"):
        build_student(teacher, StudentSpec(layers=[0, 9]))
    with pytest.raises(ModelError, match="not divisible"):
        build_student(teacher, StudentSpec(num_layers=2, hidden_size=30, num_attention_heads=4))


def test_gpt2_style_teacher_can_be_cut():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=60, n_embd=32, n_layer=4, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    teacher = TextModel(GPT2Model(config).eval(), make_tokenizer(), "embedding", pooling="lasttoken")
    student, report = build_student(teacher, StudentSpec(layers=[0, 3]))
    assert block_list(student.hf)[0] == "h" and student.num_layers == 2
    assert torch.equal(student.hf.h[1].attn.c_attn.weight, teacher.hf.h[3].attn.c_attn.weight)
    views = student(student.tokenize(["the cat ."]), frozenset({"hidden_states", "qkv"}))
    assert len(views.hidden_states) == 3 and views.queries[0].shape == (1, 4, views.hidden_states[0].shape[1], 8)


def test_layer_mapping_follows_the_copied_blocks_and_survives_export(embedding_teacher_dir, tmp_path):
    from kdforge.engine.pipeline import shape
    from kdforge.export import export
    from kdforge.methods import Pair
    from kdforge.methods.hidden_mse import HiddenMSE

    teacher = load_model(str(embedding_teacher_dir))
    student, _ = build_student(teacher, StudentSpec(layers=[0, 3]))
    export(student, tmp_path / "s")
    reloaded = load_model(str(tmp_path / "s"))
    assert reloaded.teacher_blocks == [0, 3]
    method = HiddenMSE()
    method.setup(Pair(shape(teacher), shape(reloaded), same_tokenizer=True))
    assert method.layer_map == [(1, 1), (4, 2)]  # hidden state i+1 is the output of block i
    fresh, _ = build_student(teacher, StudentSpec(num_layers=2, init="fresh"))
    method.setup(Pair(shape(teacher), shape(fresh), same_tokenizer=True))
    assert method.layer_map == [(2, 1), (4, 2)] and fresh.teacher_blocks is None  # uniform g(m) = 2m
