"""Multi-teacher methods: hand-computed weights and losses, and a recipe with two teachers."""

from __future__ import annotations

import math

import pytest
import torch

import kdforge
from kdforge.methods.dgkd import surviving_teachers
from kdforge.methods.mt_bert import importance_weighted_soft_loss
from kdforge.methods.rl_kd import policy_log_likelihood
from kdforge.methods.tmkd import average_teacher_loss
from kdforge.methods.uncertainty import adoption_weights, student_uncertainty
from kdforge.recipe import validate_recipe
from tests.conftest import classification_recipe


def test_uncertainty_is_normalised_entropy():
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    u = student_uncertainty(logits)
    assert u[0].item() == pytest.approx(1.0) and u[1].item() == pytest.approx(0.0, abs=1e-6)


def test_hard_adoption_sends_uncertain_samples_to_the_small_teacher():
    u = torch.tensor([0.1, 0.9, 0.5, 0.7])
    weights = adoption_weights(u, 2, "hard")
    # the two most uncertain samples (0.9, 0.7) -> teacher 0 (small); the others -> teacher 1
    assert weights.tolist() == [[0, 1], [1, 0], [0, 1], [1, 0]]


def test_soft_adoption_for_two_teachers_is_u_and_one_minus_u():
    u = torch.tensor([0.2, 0.6])
    per_sample = adoption_weights(u, 2, "soft_instance")
    torch.testing.assert_close(per_sample, torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    batch = adoption_weights(u, 2, "soft")
    torch.testing.assert_close(batch, torch.tensor([[0.4, 0.6], [0.4, 0.6]]))


def test_average_teacher_loss_by_hand():
    student = torch.tensor([[1.0, 0.0]])
    teachers = [torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 2.0]])]
    # MSE: teacher 0: ((1-0)^2 + 0)/2 = 0.5; teacher 1: (0 + 4)/2 = 2 -> mean 1.25
    assert average_teacher_loss(student, teachers, "mse", 1.0).item() == pytest.approx(1.25)
    assert average_teacher_loss(student, [student, student], "kl", 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_teacher_importance_weight_is_one_over_one_plus_its_loss():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    labels = torch.tensor([1])
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    teacher_ce = -math.log(p[1])
    soft = -(p[0] * math.log(0.5) + p[1] * math.log(0.5))
    expected = soft / (1 + teacher_ce)
    assert importance_weighted_soft_loss(student, [teacher], labels, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_surviving_teachers_is_seeded_and_never_empty():
    assert surviving_teachers(3, 0.5, seed=1) == surviving_teachers(3, 0.5, seed=1)
    draws = [surviving_teachers(3, 1e-6, seed=s) for s in range(20)]
    assert all(len(d) == 1 for d in draws)  # nobody survives by chance: one is kept anyway
    assert surviving_teachers(4, 1.0, seed=0) == [0, 1, 2, 3]


def test_policy_log_likelihood_by_hand():
    p = torch.tensor([[0.8, 0.3]])
    actions = torch.tensor([[1.0, 0.0]])
    expected = [math.log(0.8), math.log(0.7)]
    torch.testing.assert_close(policy_log_likelihood(p, actions), torch.tensor([expected]))


def test_recipe_with_two_teachers_and_per_method_teacher_choice(classifier_teacher_dir, data_dir, tmp_path):
    recipe = classification_recipe(classifier_teacher_dir, data_dir, max_steps=8)
    del recipe["teacher"]
    recipe["teachers"] = [str(classifier_teacher_dir), str(classifier_teacher_dir)]
    recipe["methods"] = [{"name": "tmkd"}, {"name": "kd", "teacher": 1, "weight": 0.5}]
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert results["training"]["steps"] == 8

    recipe["methods"] = [{"name": "kd", "teacher": 2}]
    with pytest.raises(kdforge.KdforgeError, match=r"reads teacher 2, but the stage has 2 teacher"):
        validate_recipe(recipe)
