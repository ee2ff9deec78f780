"""A student cut from a given model (``student: {model: X, layers: [...]}``), not from the teacher."""

from __future__ import annotations

import torch

from kdforge.export import export
from kdforge.models import build_student, load_model
from kdforge.models.internals import block_list
from kdforge.recipe import StudentSpec
from tests.conftest import sentences


def test_spec_with_model_alone_is_used_as_is():
    assert not StudentSpec(model="x").cuts
    assert StudentSpec(model="x", layers=[0]).cuts and StudentSpec(model="x", init="fresh").cuts
    assert StudentSpec(model="x", vocabulary={"keep": 0.5}).cuts


def test_cutting_a_given_model_composes_the_teacher_blocks(embedding_teacher_dir, tmp_path):
    teacher = load_model(str(embedding_teacher_dir))
    first, _ = build_student(teacher, StudentSpec(layers=[0, 2, 3]))
    export(first, tmp_path / "first")
    given = load_model(str(tmp_path / "first"))
    assert given.teacher_blocks == [0, 2, 3]

    second, report = build_student(given, StudentSpec(model="stage:first", layers=[0, 2]), from_teacher=False)
    assert second.num_layers == 2 and second.teacher_blocks == [0, 3]  # blocks 0 and 2 of [0, 2, 3]
    assert "kept model blocks [0, 2]" in report.describe() and report.fresh == 0
    assert torch.equal(block_list(second.hf)[1][1].output.dense.weight, block_list(given.hf)[1][2].output.dense.weight)
    texts = sentences(4, seed=2)
    assert second.encode(texts).shape == (4, 32)


def test_a_given_model_without_a_teacher_mapping_gets_none(embedding_teacher_dir):
    given = load_model(str(embedding_teacher_dir))  # a model not cut by kdforge
    student, _ = build_student(given, StudentSpec(model="x", num_layers=2), from_teacher=False)
    assert student.num_layers == 2 and student.teacher_blocks is None
    whole, _ = build_student(given, StudentSpec(model="x", init="fresh"), from_teacher=False)
    assert whole.num_layers == given.num_layers  # no count given: every block of the given model
