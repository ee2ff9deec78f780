"""KD from a sample store's distributions: the same loss as live KD on the same teacher."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch
from kdforge.methods.kd import kd_loss
from kdforge.methods.stored_kd import StoredKD
from kdforge.models.views import Views
from kdforge.store.samples import write_samples


@pytest.fixture
def store(tmp_path):
    teacher_logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-1.0, 1.5, 1.0]])
    probs = torch.softmax(teacher_logits, -1)
    return teacher_logits, write_samples(tmp_path / "s", list("abc"), [0, 1, 1], [0, 1, 2], probs, ["x", "y", "z"])


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_equals_kd_on_the_teacher_logits_the_store_was_made_from(store, temperature):
    teacher_logits, samples = store
    method = StoredKD(StoredKD.parse_args({"temperature": temperature}))
    method.attach_store(samples, 3)
    views = Views(attention_mask=torch.ones(2, 4))
    views.logits = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    batch = Batch(student_inputs={}, teacher_inputs=[], index=torch.tensor([2, 0]))
    expected = kd_loss(views.logits, teacher_logits[[2, 0]], temperature)
    assert torch.allclose(method(None, views, batch), expected, atol=1e-6)
    views.logits = teacher_logits[[2, 0]].clone()
    assert method(None, views, batch).item() == pytest.approx(0.0, abs=1e-6)


def test_a_store_over_other_labels_is_refused(store):
    _, samples = store
    with pytest.raises(IncompatibleError, match="over 3 labels, the task has 2"):
        StoredKD().attach_store(samples, 2)


def test_a_row_outside_the_store_is_refused(store):
    _, samples = store
    method = StoredKD()
    method.attach_store(samples, 3)
    views = Views(attention_mask=torch.ones(1, 2))
    views.logits = torch.zeros(1, 3)
    with pytest.raises(IncompatibleError, match="training row 7 is not in the sample store"):
        method(None, views, Batch(student_inputs={}, teacher_inputs=[], index=torch.tensor([7])))
