"""Which teacher layer each student layer learns from (hidden-state numbering, 0 = embeddings)."""

from __future__ import annotations

from kdforge.errors import IncompatibleError


def uniform_map(teacher_layers: int, student_layers: int, include_embeddings: bool = False) -> list[tuple[int, int]]:
    """TinyBERT's uniform strategy ``g(m) = m * N / M``: student block m learns teacher block g(m).

    Returns ``(teacher, student)`` hidden-state indices; ``(0, 0)`` is the embedding layer.
    """
    pairs = [(max(1, round(m * teacher_layers / student_layers)), m) for m in range(1, student_layers + 1)]
    return [(0, 0), *pairs] if include_embeddings else pairs


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
