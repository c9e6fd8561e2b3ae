"""The one exception type of the device-side profilers.

Every failure a user can cause (bad bundle, corrupt LUT, missing runtime) is a
``ProfilerError`` whose message names the file, key or value at fault, so the CLI
can print it without a traceback.
"""

from __future__ import annotations


class ProfilerError(Exception):
    """A user-facing profiling error; the message says what is wrong and where."""
