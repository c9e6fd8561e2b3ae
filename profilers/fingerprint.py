"""Device and runtime fingerprint recorded in every LUT.

A latency table is only valid for the machine, runtime and shape it was measured
with; the fingerprint makes that explicit so a mismatch can be reported field by
field instead of producing silently wrong predictions.
"""

from __future__ import annotations

import os
import platform
from typing import Any

REQUIRED_FINGERPRINT_KEYS: tuple[str, ...] = (
    "cpu_model",
    "cpu_count",
    "threads",
    "runtime",
    "runtime_version",
    "provider",
    "batch",
    "resolution",
    "precision",
    "platform",
    "python",
)

# Fields that change latencies; used by default when comparing a LUT to the current device.
DEFAULT_MATCH_FIELDS: tuple[str, ...] = (
    "cpu_model",
    "threads",
    "runtime",
    "runtime_version",
    "provider",
    "batch",
    "resolution",
    "precision",
)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def onnxruntime_version() -> str:
    """Installed onnxruntime version, or 'not installed' (import kept lazy)."""
    try:
        import onnxruntime
    except ImportError:
        return "not installed"
    return str(onnxruntime.__version__)


def current_fingerprint(
    threads: int,
    provider: str = "CPUExecutionProvider",
    batch: int = 1,
    resolution: int = 224,
    precision: str = "fp32",
    runtime: str = "onnxruntime",
    runtime_version: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Fingerprint of this machine for the given runtime settings (``extra`` adds free fields)."""
    fp: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "threads": int(threads),
        "runtime": runtime,
        "runtime_version": runtime_version if runtime_version is not None else onnxruntime_version(),
        "provider": provider,
        "batch": int(batch),
        "resolution": int(resolution),
        "precision": precision,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    fp.update(extra)
    return fp
