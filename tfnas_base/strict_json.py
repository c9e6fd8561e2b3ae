"""JSON parsing that refuses what a hand-edited file should never hold: a key twice, NaN or Infinity.

Python's ``json`` keeps the last of two equal keys silently; in a latency table or a config
that hides an edit (``"target_ms": 5`` then ``"target_ms": 7``). Shared by the profilers
(tables, manifests) and ``tfnas`` (configs, architectures, genotypes).
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key!r} appears twice in one object (the first value would be lost)")
        out[key] = value
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed")


def loads(text: str) -> Any:
    """``json.loads`` that raises ``DuplicateKeyError`` / ``ValueError`` for repeated keys and NaN/Infinity."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
