"""Errors written for the user: one line that says what is wrong, where, and what to do.

The CLI prints ``str(error)`` and exits non-zero; anything that is not a ``KdforgeError``
is a bug in kdforge and is reported as such (``--debug`` shows the traceback).
"""

from __future__ import annotations


class KdforgeError(Exception):
    """Base class of every error meant for the user."""


class RecipeError(KdforgeError):
    """The recipe is malformed: a wrong key, type or value (the message names the field)."""


class DataError(KdforgeError):
    """A data file is missing, unreadable or lacks a needed column."""


class ModelError(KdforgeError):
    """A teacher or student cannot be loaded or built."""


class IncompatibleError(KdforgeError):
    """A method cannot apply to this teacher/student pair (checked before training)."""


class TrainingError(KdforgeError):
    """Training cannot go on (NaN loss, diverged run); the last checkpoint is kept."""


class CheckpointError(KdforgeError):
    """A checkpoint is unreadable or belongs to another run."""


class StoreError(KdforgeError):
    """A knowledge store is missing, corrupted, from another format, or built for another run."""
