"""Device and runtime fingerprint recorded in every LUT.

A latency table is only valid for the machine, runtime and shape it was measured
with; the fingerprint makes that explicit so a mismatch can be reported field by
field instead of producing silently wrong predictions. Which fields identify a
device (and which are only informational) is ``profilers.device``'s business.
"""

from __future__ import annotations

import platform
from typing import Any

from profilers.device import IDENTITY_FIELDS, IDENTITY_VERSION, cpu_count, cpu_identity

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
DEFAULT_MATCH_FIELDS: tuple[str, ...] = IDENTITY_FIELDS


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
        "identity_version": IDENTITY_VERSION,
        **cpu_identity(),
        "cpu_count": cpu_count(),
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
