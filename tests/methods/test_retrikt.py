"""The RetriKT loss on hand-computed tensors."""

from __future__ import annotations

import math

import torch

from kdforge.methods.retrikt import retrikt_loss


def test_zero_when_the_mixture_is_the_teacher():
    teacher = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert retrikt_loss(torch.log(teacher), teacher).item() == 0.0


def test_value_is_the_kl_of_teacher_to_mixture():
    teacher = torch.tensor([[0.5, 0.5]])
    mixture = torch.tensor([[0.25, 0.75]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert math.isclose(retrikt_loss(torch.log(mixture), teacher).item(), expected, rel_tol=1e-6)
