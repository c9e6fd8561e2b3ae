"""Validated reads of JSON/YAML files, and figures written atomically (``tfnas_base.atomic``).

Reads are strict: a key twice in one mapping is an error (YAML 1.2 and JSON's RFC call it one; the
parsers would keep the last value silently), and files have a size limit.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import yaml

from tfnas.errors import ConfigError
from tfnas_base import strict_json
from tfnas_base.atomic import atomic_write_bytes

# Configs, spaces, architectures and genotypes are a few KB; a file this large is not one of them (a
# 30 MB YAML takes minutes to parse), so it is refused before parsing.
MAX_FILE_BYTES = 4 * 1024 * 1024


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """A matplotlib figure as PNG at ``path``, written atomically (an interrupted plot never leaves half a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def binary_kind(head: bytes) -> str:
    """What a file that is not text probably is, from its first bytes (for error messages)."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it looks like a Python pickle"
    if head[:4] == b"PK\x03\x04":
        return "it looks like a zip archive (e.g. a torch checkpoint)"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff":
        return "it looks like an image"
    return "it is a binary file"


def _mb(n: int, digits: int) -> str:
    return f"{n / 2**20:.{digits}f} MB" if n >= 2**20 else f"{n} bytes"


def read_bytes(
    path: str | os.PathLike,
    what: str,
    kind: str,
    max_bytes: int | None = MAX_FILE_BYTES,
    error: type[Exception] = ConfigError,
) -> bytes:
    """A file's bytes, at most ``max_bytes`` (checked before and while reading); a missing, unreadable or
    oversized file is an ``error`` naming it and ``what`` it should have been."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise error(
                f"{what} {path} is {_mb(size, 1)}; a {kind} file tfnas reads is at most {_mb(max_bytes, 0)}"
                " (is it the right file?); refused unread"
            )
        with path.open("rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} not found: {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a {kind} file") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew after the size check
        raise error(f"{what} {path} is larger than {_mb(max_bytes, 0)}; refused")
    return data


def read_text(path: str | os.PathLike, what: str, kind: str, max_bytes: int | None = MAX_FILE_BYTES) -> str:
    """A UTF-8 text file; a missing, unreadable, binary or oversized file is a ``ConfigError`` naming it."""
    data = read_bytes(path, what, kind, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{what} {path} is not a {kind} text file ({binary_kind(data[:16])}); it is not loaded"
        ) from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning every failure into a ``ConfigError`` naming the file."""
    path = Path(path)
    text = read_text(path, what, "JSON")
    try:
        return strict_json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{what} {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg});"
            " the file may be truncated or corrupted"
        ) from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to be a tfnas file") from None
    except ValueError as e:  # a duplicate key, NaN or Infinity
        raise ConfigError(f"{what} {path}: {e}") from None


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """Read YAML (safe loader only), errors name the file and position."""
    path = Path(path)
    text = read_text(path, what, "YAML")
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    except (ValueError, RecursionError) as e:  # e.g. an impossible date, or nesting too deep
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader reports it
                break
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (first at line {first.line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
        return super().construct_mapping(node, deep)


def repo_root() -> Path:
    """The checkout root (holds ``configs/`` and ``latency_tables/``)."""
    return Path(__file__).resolve().parents[2]
