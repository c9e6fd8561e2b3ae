"""Backend registry: name -> class. Add a backend by adding it to ``BACKENDS``."""

from __future__ import annotations

from typing import Any

from profilers.backends.base import Backend
from profilers.backends.ort import OrtBackend
from profilers.backends.tensorrt import TensorRTBackend
from profilers.errors import ProfilerError

BACKENDS: dict[str, type[Backend]] = {
    OrtBackend.name: OrtBackend,
    TensorRTBackend.name: TensorRTBackend,
}


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` with ``options`` (threads, precision)."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ProfilerError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None
    return cls(**options)


__all__ = ["BACKENDS", "Backend", "OrtBackend", "TensorRTBackend", "get_backend"]
