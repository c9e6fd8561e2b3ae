"""Files shipped with tfnas: search spaces, search/DARTS configs and latency tables.

The top-level ``configs/`` and ``latency_tables/`` folders of the checkout are the source of truth. A wheel
carries them as package data under ``tfnas/_shipped/`` (``package-dir`` in ``pyproject.toml``), read here
through :mod:`importlib.resources`; from a checkout or an editable install there is no ``tfnas/_shipped``
and the checkout's own folders are used, so edits show at once.

Users name shipped files the way the README and the shipped configs do, by their checkout-relative path
(``configs/search/tfnas_cpu_demo.yaml``, ``latency_tables/<table>.json``) or by a bare name
(``tfnas_cpu_demo``, ``tfnas_imagenet-ort-cpu-avx512-1t-b1-224``). A path that exists always wins: the user's own
files are never shadowed by shipped ones.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from tfnas.errors import ConfigError, LatencyTableError, TfnasError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_PACKAGED = "_shipped"  # tfnas/_shipped/{configs,latency_tables} inside a wheel
FOLDERS = ("configs", "latency_tables")

_files = contextlib.ExitStack()  # keeps files extracted from a zipped install alive until exit
atexit.register(_files.close)


def data_root() -> Traversable:
    """The folder that holds ``configs/`` and ``latency_tables/``: packaged copy first, else the checkout."""
    packaged = resources.files("tfnas").joinpath(_PACKAGED)
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[1]
    if all((checkout / f).is_dir() for f in FOLDERS):
        return checkout
    raise TfnasError(
        f"tfnas data files are missing: neither {packaged} nor a checkout's configs/ and latency_tables/ next to"
        f" {checkout / 'tfnas'} exist; reinstall tfnas"
    )


def _node(rel: str | Path) -> Traversable:
    node = data_root()
    for part in Path(rel).parts:
        node = node.joinpath(part)
    return node


def _as_path(node: Traversable) -> Path:
    """A real file-system path for a shipped file (installs are unpacked: it is the file itself)."""
    if isinstance(node, Path):
        return node
    return _files.enter_context(resources.as_file(node))


def shipped_dir(folder: str) -> Path:
    """A shipped folder such as ``configs/spaces`` as a path (unpacked installs and checkouts)."""
    node = _node(folder)
    if not isinstance(node, Path):
        raise TfnasError(f"tfnas is installed zipped; shipped folder {folder} cannot be listed as a path")
    return node


def shipped_names(folder: str, suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")) -> list[str]:
    """File names (without suffix) of the shipped files in ``folder`` with one of ``suffixes``."""
    node = _node(folder)
    if not node.is_dir():
        return []
    return sorted(Path(c.name).stem for c in node.iterdir() if c.is_file() and Path(c.name).suffix in suffixes)


def shipped_file(rel: str | Path) -> Path | None:
    """The shipped file at a checkout-relative path (``latency_tables/x.json``), or None."""
    rel = Path(rel)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    node = _node(rel)
    return _as_path(node) if node.is_file() else None


def find(
    name_or_path: str | Path,
    folder: str,
    suffixes: tuple[str, ...],
    what: str,
    error: type[TfnasError] = ConfigError,
) -> Path:
    """Resolve a user path or the name of a shipped file in ``folder`` (e.g. ``configs/search``).

    Tried in order: the path as given (from the working directory), the same path inside the shipped data
    (``configs/...``, ``latency_tables/...``), then ``folder/<name>`` with each suffix. Nothing found is an
    ``error`` that lists what is shipped in ``folder``.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    names = [path]
    if not path.is_absolute():
        names.append(Path(folder) / path)
        if path.suffix not in suffixes:
            names += [Path(folder) / (path.name + s) for s in suffixes]
    for rel in names:
        found = shipped_file(rel)
        if found is not None:
            return found
    shipped = shipped_names(folder, suffixes)
    raise error(
        f"{what} {str(name_or_path)!r} does not exist, neither as a file nor as a shipped {what}"
        f" (shipped in {folder}/: {', '.join(shipped) or 'none'})"
    )


def find_table(name_or_path: str | Path) -> Path:
    """A latency table: a JSON path, or a shipped table's name (``tfnas_imagenet-ort-cpu-avx512-1t-b1-224``)."""
    return find(name_or_path, "latency_tables", (".json",), "latency table", LatencyTableError)


def find_config(name_or_path: str | Path, kind: str) -> Path:
    """A config YAML: a path, or the name of a shipped one in ``configs/<kind>`` (``search``, ``darts``)."""
    return find(name_or_path, f"configs/{kind}", (".yaml", ".yml"), f"{kind} config")
