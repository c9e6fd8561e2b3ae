"""The host side's user-facing errors, under the toolkit's one root (``tfnas_base.errors.UserError``).

Every error a user can cause (bad config, bad file, impossible target, a table of another device) is a
``UserError``: ``TfnasError`` here, ``ProfilerError`` from the device-side profilers. The CLI catches the root
once, prints the message and exits non-zero; a traceback means a bug.
"""

from __future__ import annotations

from tfnas_base.errors import UserError

__all__ = ["ConfigError", "LatencyTableError", "TfnasError", "UserError"]


class TfnasError(UserError):
    """An error caused by user input; its message says what and where."""


class ConfigError(TfnasError):
    """A config, space, genotype or architecture file is malformed or out of bounds."""


class LatencyTableError(TfnasError):
    """A latency table is malformed, mismatched or missing entries."""
