"""Train/eval mode switches that give a model back as it was, even when the work in between fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (no dropout) and give it back in the mode it was in.

    Inference inside a training run (evaluation, export, a teacher labelling) must not leave the
    student in eval mode, nor a caller's model in train mode.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
