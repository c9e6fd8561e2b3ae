"""An exclusive, advisory lock on something a long job writes (a latency table, a run folder).

Two ``tfnas profile`` runs into one table, or two searches into one ``--out``, would interleave
their writes. The first writer takes ``<path>`` with ``flock`` (released by the kernel when the
process ends, so a crash leaves no stale lock) and records its pid and command line; a second
writer is refused with an error naming that process. Within one process the lock is re-entrant
(a command claims the folder, then its run loop takes the same lock).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tfnas_base.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writes stay atomic, concurrent writers are not detected
    fcntl = None  # type: ignore[assignment]

_HELD: dict[str, list[int]] = {}  # resolved path -> [fd, depth] of the locks this process holds


def acquire(lock_path: str | os.PathLike[str], what: str) -> None:
    """Take ``lock_path`` or raise ``UserError`` naming the process that holds it."""
    key = str(Path(lock_path).resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return
    if fcntl is None:
        _HELD[key] = [-1, 1]
        return
    Path(key).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"{what} is being written by another process ({holder}); wait for it to finish, or choose another"
            f" output (lock file: {key})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode(), 0)
    _HELD[key] = [fd, 1]


def release(lock_path: str | os.PathLike[str]) -> None:
    key = str(Path(lock_path).resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    if held[0] >= 0:
        os.ftruncate(held[0], 0)
        fcntl.flock(held[0], fcntl.LOCK_UN)
        os.close(held[0])


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold ``lock_path`` for the block; ``what`` names the thing protected in the error message."""
    acquire(lock_path, what)
    try:
        yield
    finally:
        release(lock_path)
