"""User-facing errors: one root for the whole toolkit.

Every error a user can cause (bad config, bad file, impossible target, a table of
another device) is a ``ProfilerError``: the device-side profilers define it (they
import nothing of ``tfnas``), and ``TfnasError`` extends it on the host side. The
CLI catches the root once, prints the message and exits non-zero; a traceback
means a bug.
"""

from __future__ import annotations

from profilers.errors import ProfilerError

__all__ = ["ConfigError", "LatencyTableError", "ProfilerError", "TfnasError"]


class TfnasError(ProfilerError):
    """An error caused by user input; its message says what and where."""


class ConfigError(TfnasError):
    """A config, space, genotype or architecture file is malformed or out of bounds."""


class LatencyTableError(TfnasError):
    """A latency table is malformed, mismatched or missing entries."""
