"""The backend interface: turn one ONNX graph into a run-once closure.

A backend hides the runtime (session creation, buffers, synchronisation) so the
timing protocol only ever sees ``fn()``; everything that influences latency is
reported by ``fingerprint_fields`` and ends up in the LUT.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from profilers.errors import ProfilerError


class Backend(ABC):
    """A runtime that can time ONNX graphs."""

    name: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self, threads: int = 1, precision: str = "fp32") -> None:
        if threads < 1:
            raise ProfilerError(f"backend {self.name}: threads={threads}, expected an integer >= 1")
        if precision not in self.precisions:
            raise ProfilerError(f"backend {self.name}: precision {precision!r} not supported; use {self.precisions}")
        self.threads = threads
        self.precision = precision

    @abstractmethod
    def fingerprint_fields(self) -> dict[str, Any]:
        """Fingerprint fields this backend determines: runtime, runtime_version, provider, extras."""

    @abstractmethod
    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        """Load ``onnx_path`` with a pre-allocated input of ``input_shape``; return a run-once closure.

        Raises ``ProfilerError`` naming the file when the graph cannot be loaded.
        """
