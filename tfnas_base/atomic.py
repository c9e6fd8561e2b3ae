"""Atomic writes: a file is either its old self or complete, never half written.

Every writer goes through a temporary file in the same folder (so the final ``os.replace`` is a rename on one
file system, atomic on POSIX), fsynced where the bytes are ours to write. An interrupted run, a full disk or a
killed worker leaves the previous file, never a truncated one that a later load would misread. Standard library
only: ``profilers`` (tables, manifests, quantized graphs) and ``tfnas`` (reports, checkpoints, exports) share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    """0666 minus the umask: what ``open`` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _replaced_mode(path: Path) -> int:
    """The mode of the file being replaced, else the default one."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return _default_mode()


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort; not supported everywhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(
    path: str | os.PathLike, suffix: str = ".tmp", *, keep_mode: bool = False, sync_dir: bool = False
) -> Iterator[Path]:
    """A temporary name next to ``path`` for a writer that wants a file name (ONNX exporters, savers).

    When the block ends normally the file gets the usual permissions (``keep_mode``: those of the file it
    replaces, for shared artefacts such as tables) and is renamed over ``path`` (``sync_dir``: the rename is
    fsynced too); on any error it is removed. So ``path`` is always the old file or a complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _replaced_mode(path) if keep_mode else _default_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
        if sync_dir:
            _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, keep_mode: bool = False, sync_dir: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); flags as ``atomic_path``'s."""
    with atomic_path(path, keep_mode=keep_mode, sync_dir=sync_dir) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, keep_mode: bool = False, sync_dir: bool = False) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), keep_mode=keep_mode, sync_dir=sync_dir)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """``obj`` as JSON (one newline at the end), atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")
