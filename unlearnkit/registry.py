"""Name -> object registries, shared by objectives and metrics.

A registry is what lets a notebook parameter, a command-line flag or a Python call name a
method or metric by a plain string (``"npo"``, ``"truth_ratio"``). Unknown names raise a
:class:`KeyError` subclass that lists every valid choice.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An objective, metric or suite name that is not registered. The message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """An ordered mapping of names to entries, with helpful errors.

    >>> r = Registry("objective"); r.add("ga", 1); r.get("ga")
    1
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    @staticmethod
    def key(name: str) -> str:
        """How a given name is looked up: ``" NPO-x "`` -> ``"npo_x"``."""
        return name.strip().lower().replace("-", "_")

    def get(self, name: str) -> T:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = self.key(name)
        if key not in self._items:
            close = difflib.get_close_matches(key, self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; valid choices: {', '.join(self.names())}")
        return self._items[key]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"


@dataclass(frozen=True)
class Param:
    """A documented hyperparameter with its default and valid range.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open``; ``choices`` restricts
    string parameters. ``doc`` says what it does and in which unit.
    """

    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{owner}: parameter {name}={value!r} is invalid; valid range: {self.range_text()}")
            return value
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{owner}: parameter {name}={value!r} must be True or False")
            return value
        if value is None and self.default is None:
            return None
        bounded_optional = self.default is None and (self.low is not None or self.high is not None)
        if bounded_optional or (isinstance(self.default, (int, float)) and not isinstance(self.default, bool)):
            if isinstance(value, bool):
                raise ValueError(f"{owner}: parameter {name}={value!r} is a boolean, not a number; valid range: "
                                 f"{self.range_text()}")
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{owner}: parameter {name}={value!r} is not a number; valid range: {self.range_text()}") from None
            bad = not math.isfinite(v)
            if self.low is not None:
                bad |= v < self.low or (self.low_open and v == self.low)
            if self.high is not None:
                bad |= v > self.high or (self.high_open and v == self.high)
            if bad:
                raise ValueError(f"{owner}: parameter {name}={value!r} is out of range; valid range: {self.range_text()}")
            if isinstance(self.default, int) and not v.is_integer():
                raise ValueError(f"{owner}: parameter {name}={value!r} must be an integer; valid range: "
                                 f"{self.range_text()}")
            return int(v) if isinstance(self.default, int) and float(v).is_integer() else type(self.default)(v) if isinstance(self.default, float) else v
        return value


def resolve_params(owner: str, spec: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """Merge user values into defaults, validating each; unknown names raise with the valid ones."""
    unknown = sorted(set(given) - set(spec))
    if unknown:

        hints = [f"{u} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(u, list(spec), n=1)) else u
                 for u in unknown]
        raise ValueError(
            f"{owner}: unknown parameter(s) {', '.join(hints)}; valid parameters: {', '.join(spec) or '(none)'}"
        )
    out = {k: p.default for k, p in spec.items()}
    for k, v in given.items():
        out[k] = spec[k].check(owner, k, v)
    return out
