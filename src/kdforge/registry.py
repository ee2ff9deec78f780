"""A named registry, one per concern (methods, tasks, ...): an entry is added by a decorator.

Modelled on torchdistill's registries: a new method or task is one decorated class in one
file, and recipes select it by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from kdforge.errors import RecipeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a class; unknown names raise a ``RecipeError`` listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            obj.registered_name = name  # type: ignore[attr-defined]
            return obj

        return decorate

    def get(self, name: str, where: str = "") -> T:
        try:
            return self._entries[name]
        except KeyError:
            prefix = f"{where}: " if where else ""
            raise RecipeError(f"{prefix}unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))
