"""``Registry[T]``: named things (ops, methods, samplers, rules) with one way to fail on an unknown name.

OPS: Registry[OpBuilder] = Registry("DARTS op")

@OPS.register("sep_conv_3x3")
def _sep3(C, stride, affine): ...

OPS["sep_conv_3"]  # ConfigError: unknown DARTS op 'sep_conv_3' (choose from ...); did you mean 'sep_conv_3x3'?
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tfnas.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: object, known: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """An ordered name -> item table; registering a name twice is a bug, asking for an unknown one a user error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = list(self._items)
            raise ConfigError(
                f"unknown {self.kind} {name!r} (choose from {', '.join(known)}){did_you_mean(name, known)}"
            ) from None

    def replaced(self, name: str, item: T) -> Registry[T]:
        """A copy with ``name`` bound to ``item`` (added when new), this registry unchanged: a test swaps one
        entry in by replacing the module's registry (``monkeypatch.setattr(module, "RULES", RULES.replaced(...))``)
        instead of mutating the shared one."""
        copy: Registry[T] = Registry(self.kind)
        copy._items = {**self._items, name: item}
        return copy

    def get(self, name: str) -> T:
        """The item named ``name`` (a ``ConfigError`` listing the known names otherwise)."""
        return self[name]

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:  # an unhashable "name" (a mapping where a name belongs) is not one
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
