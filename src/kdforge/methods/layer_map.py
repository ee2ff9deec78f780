"""Which teacher layer each student layer learns from (hidden-state numbering, 0 = embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdforge.errors import IncompatibleError

if TYPE_CHECKING:
    from kdforge.methods.base import ModelShape


def uniform_map(teacher_layers: int, student_layers: int, include_embeddings: bool = False) -> list[tuple[int, int]]:
    """TinyBERT's uniform strategy ``g(m) = m * N / M``: student block m learns teacher block g(m).

    Returns ``(teacher, student)`` hidden-state indices; ``(0, 0)`` is the embedding layer.
    """
    pairs = [(max(1, round(m * teacher_layers / student_layers)), m) for m in range(1, student_layers + 1)]
    return [(0, 0), *pairs] if include_embeddings else pairs


def default_map(teacher: ModelShape, student: ModelShape, include_embeddings: bool = False) -> list[tuple[int, int]]:
    """A student cut from this teacher learns from the blocks it was copied from; otherwise uniform."""
    blocks = student.teacher_blocks
    if blocks and len(blocks) == student.num_layers and max(blocks) < teacher.num_layers:
        pairs = [(block + 1, j + 1) for j, block in enumerate(blocks)]
        return [(0, 0), *pairs] if include_embeddings else pairs
    return uniform_map(teacher.num_layers, student.num_layers, include_embeddings)


def check_map(
    layer_map: list[tuple[int, int]], teacher_layers: int, student_layers: int, method: str
) -> list[tuple[int, int]]:
    for t, s in layer_map:
        if not 0 <= t <= teacher_layers:
            raise IncompatibleError(
                f"{method}: layer_map uses teacher layer {t}, but the teacher has layers 0..{teacher_layers}"
            )
        if not 0 <= s <= student_layers:
            raise IncompatibleError(
                f"{method}: layer_map uses student layer {s}, but the student has layers 0..{student_layers}"
            )
    return layer_map
