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


def test_held_out_rows_count_for_nothing():
    teacher = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    log_mixture = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.2, 0.8]])).requires_grad_()
    kept = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # row 0; row 2 is exact
    loss = retrikt_loss(log_mixture, teacher, torch.tensor([True, False, True]))
    assert math.isclose(loss.item(), kept / 2, rel_tol=1e-6)
    loss.backward()
    assert log_mixture.grad[1].abs().sum() == 0 and log_mixture.grad[0].abs().sum() > 0
    nothing = retrikt_loss(log_mixture, teacher, torch.zeros(3, dtype=torch.bool))
    assert nothing.item() == 0.0 and nothing.requires_grad  # a batch of held-out rows only: still on the graph


def test_student_kd_adds_kd_on_the_students_own_prediction(tmp_path):
    from torch import nn

    from kdforge.methods.base import Batch
    from kdforge.methods.retrikt import RetriKT
    from kdforge.models.views import Views
    from kdforge.store.samples import write_samples

    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    store = write_samples(tmp_path / "s", list("abcd"), [0, 1, 0, 1], [0, 1, 2, 3], probs, ["x", "y"])

    class Student(nn.Module):
        def rows(self, view, texts, pairs=None, batch_size=64):
            assert view == "embedding"
            return torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])

    views = Views(attention_mask=torch.ones(2, 3))
    views.logits, views.embedding = torch.tensor([[1.0, -1.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.2], [0.1, 1.0]])
    batch = Batch(student_inputs={}, teacher_inputs=[], index=torch.tensor([0, 1]))
    losses = []
    for weight in (0.0, 0.5):
        method = RetriKT(RetriKT.parse_args({"k": 2, "student_kd": weight}))
        method.attach_store(store, 2)
        method.bind(Student(), [])
        losses.append(method(None, views, batch))
    own = retrikt_loss(torch.log_softmax(views.logits, -1), probs[:2])
    assert torch.allclose(losses[1] - losses[0], 0.5 * own, atol=1e-6)
