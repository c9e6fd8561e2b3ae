"""The root of every error a user can cause.

A bad config, a corrupt table, a missing runtime, an impossible target or a folder another run holds: each is a
``UserError`` (``profilers.errors.ProfilerError`` on the device side, ``tfnas.errors.TfnasError`` on the host
side) whose message names the file, key or value at fault. The command lines catch this one type, print the
message and exit non-zero; a traceback means a bug.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A user-facing error; the message says what is wrong and where."""
