"""The device-side profilers' error type (a ``tfnas_base.errors.UserError``).

Every failure a user can cause (bad bundle, corrupt LUT, missing runtime) is a ``ProfilerError`` whose message
names the file, key or value at fault, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from tfnas_base.errors import UserError

__all__ = ["ProfilerError", "UserError"]


class ProfilerError(UserError):
    """A user-facing profiling error; the message says what is wrong and where."""
