"""User-facing errors.

Every error a user can cause (bad config, bad file, impossible target) is a
``TfnasError``: the CLI prints its message and exits non-zero instead of
showing a traceback.
"""

from __future__ import annotations


class TfnasError(Exception):
    """An error caused by user input; its message says what and where."""


class ConfigError(TfnasError):
    """A config, space or architecture file is malformed or out of bounds."""


class LatencyTableError(TfnasError):
    """A latency table is malformed, mismatched or missing entries."""
