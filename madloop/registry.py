"""Name -> component tables that users extend from their own code, without editing madloop.

    import madloop
    @madloop.models.register("my-model")
    @dataclass(frozen=True)
    class MySpec: ...

Strings become classes here, at the config boundary, and nowhere deeper in the library.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Callable, Generic, Iterator, TypeVar

from madloop.errors import MadloopError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of components of one kind (data sources, model families, algorithms, metrics)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items and not replace:
                raise MadloopError(f"{self.kind} '{name}' is already registered (pass replace=True to override)")
            self._items[name] = item
            return item

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = get_close_matches(str(name), self._items, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            choices = ", ".join(sorted(self._items))
            raise MadloopError(f"unknown {self.kind} '{name}'{hint}; choose from: {choices}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)


DATA: Registry = Registry("data source")
MODELS: Registry = Registry("model")
ALGOS: Registry = Registry("algorithm")
METRICS: Registry = Registry("metric")
