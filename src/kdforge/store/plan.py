"""Turning a ``teacher.mode: cached`` teacher into a store-backed source, checked before training.

Which hidden-state and attention layers to keep (``store.layers: auto``) is found by running
the methods once on one batch with a live teacher and recording which layers they read, so a
store holds what the recipe uses and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import torch

from kdforge.errors import IncompatibleError, RecipeError
from kdforge.models.text_model import TextModel
from kdforge.models.views import Views
from kdforge.recipe.schema import TeacherSpec, TrainingSpec
from kdforge.store import STORABLE, identity_of, prepare_store
from kdforge.store.manifest import StoredViews
from kdforge.store.reader import StoredTeacher

PROBE_ROWS = 8


class RecordingLayers(tuple):
    """A per-layer tuple that notes which layers are read."""

    seen: set[int]

    def __new__(cls, items, seen: set[int]):
        obj = super().__new__(cls, items)
        obj.seen = seen
        return obj

    def __getitem__(self, key):
        picked = range(len(self))[key]
        self.seen.update(picked if isinstance(key, slice) else (picked,))
        return super().__getitem__(key)

    def __iter__(self):
        self.seen.update(range(len(self)))
        return super().__iter__()


def read_layers(objective, teachers: list[TextModel], needs: list[frozenset[str]], batch, position: int):
    """(hidden-state layers, attention blocks) of teacher ``position`` that the methods read on ``batch``."""
    hidden: set[int] = set()
    attention: set[int] = set()
    views: list[Views | None] = []
    with torch.no_grad(), torch.random.fork_rng():  # the probe must not shift the run's random draws
        for i, (teacher, need) in enumerate(zip(teachers, needs, strict=True)):
            if not need:
                views.append(None)
                continue
            inputs = {k: v.to(teacher.device) for k, v in batch.teacher_inputs[i].items()}
            live = teacher(inputs, need)
            if i == position:
                if live.hidden_states is not None:
                    live.hidden_states = RecordingLayers(live.hidden_states, hidden)
                if live.attentions is not None:
                    live.attentions = RecordingLayers(live.attentions, attention)
            views.append(live)
        objective(batch, views)
    return tuple(sorted(hidden)), tuple(sorted(b + 1 for b in attention))


def cached_teacher(
    spec: TeacherSpec,
    position: int,
    teachers: list[TextModel],
    needs: list[frozenset[str]],
    objective,
    collator,
    dataset: datasets.Dataset,
    task,
    training: TrainingSpec,
    log: Callable[[str], None],
    vocabulary=None,
) -> StoredTeacher:
    """The store-backed source of teacher ``position``: the matching store, reused or built first."""
    where = f"teacher {spec.model!r} (mode: cached)"
    need = needs[position]
    unstorable = need - STORABLE
    if unstorable:
        raise IncompatibleError(
            f"{where}: the methods need the teacher's {', '.join(sorted(unstorable))}, which a knowledge store "
            "does not hold; use mode: online for this teacher"
        )
    if training.augment is not None:
        raise RecipeError(f"{where}: training.augment makes new sentences each epoch, which a store cannot hold")
    if task is not None and task.inputs_vary:
        raise RecipeError(f"{where}: the {task.spec.name} task changes the teacher's inputs every epoch (masking)")
    store = spec.store
    hidden: tuple[int, ...] = ()
    attention: tuple[int, ...] = ()
    if need & {"hidden_states", "attentions"}:
        if store.layers == "auto":
            probe = collator(dataset.select(range(min(PROBE_ROWS, len(dataset)))).to_list())
            probe = probe.to(next(objective.parameters()).device)
            hidden, attention = read_layers(objective, teachers, needs, probe, position)
        else:
            hidden = tuple(sorted(set(store.layers)))
            attention = tuple(layer for layer in hidden if layer >= 1)
        hidden = hidden if "hidden_states" in need else ()
        attention = attention if "attentions" in need else ()
    views = StoredViews(
        names=tuple(sorted(need)),
        hidden_layers=hidden,
        attention_layers=attention,
        top_k=store.top_k,
        precision=store.precision,
    )
    teacher = teachers[position]
    identity = identity_of(teacher, dataset, task.spec.name if task else "", collator.max_length, views)
    found = prepare_store(store, identity, teacher, spec.model, dataset, collator, position, log)
    return StoredTeacher(found, need, position, vocabulary)
