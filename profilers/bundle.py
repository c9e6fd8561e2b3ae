"""Reading a profiling bundle (written by ``tfnas.latency.bundle`` on the host).

A bundle is a folder with ``manifest.json`` and one ONNX graph per (op signature,
width) point. This module only validates and describes it; it never imports tfnas.
Manifest (``version`` 2; version 1 manifests, with embedded weights, still load)::

    {"format": "tfnas.bundle", "version": 2, "space": str, "batch": int,
     "resolution": int, "precision": "fp32", "input_layout": "NCHW",
     "profile_precision": "fp32" | "int8",   (optional; default fp32)
     "weights": "generated" | "embedded",
     "entries": [{"key": str, "width": int|null, "file": "graphs/x.onnx",
                  "input_shape": [n, c, h, w]}, ...],
     "meta": {...free...}}

``precision`` is the graphs' own (fp32; weights generated on the device). ``profile_precision`` is
the precision the bundle is to be profiled at, the default of ``python -m profilers run``: for
int8 the device quantizes each fp32 graph itself (``profilers.quantize``), so an int8 bundle is the
same few MB as an fp32 one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from profilers.errors import ProfilerError
from profilers.lut import write_text_atomic
from tfnas_base import strict_json

BUNDLE_FORMAT = "tfnas.bundle"
BUNDLE_VERSION = 2
READABLE_BUNDLE_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
WEIGHTS_MODES = ("embedded", "generated")  # generated: see profilers.weights
SUPPORTED_PRECISIONS = ("fp32",)  # of the graphs
PROFILE_PRECISIONS = ("fp32", "int8")  # what a device may make of them
SUPPORTED_LAYOUTS = ("NCHW",)


@dataclass(frozen=True)
class ManifestEntry:
    """One graph to time: op signature ``key`` at mid-channel ``width`` (None: fixed part)."""

    key: str
    width: int | None
    file: str
    input_shape: tuple[int, ...]
    path: Path  # absolute path of the graph file


@dataclass(frozen=True)
class Manifest:
    """A validated bundle manifest."""

    root: Path
    space: str
    batch: int
    resolution: int
    precision: str
    input_layout: str
    entries: tuple[ManifestEntry, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    weights: str = "embedded"
    profile_precision: str = "fp32"

    def keys_widths(self) -> list[tuple[str, int | None]]:
        return [(e.key, e.width) for e in self.entries]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def load_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate ``bundle_dir/manifest.json``; errors name the file, entry and value."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise ProfilerError(f"bundle folder {root} does not exist or is not a folder")
    mpath = root / MANIFEST_NAME
    src = str(mpath)
    try:
        text = mpath.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfilerError(f"{root} is not a bundle: {MANIFEST_NAME} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfilerError(f"cannot read {src}: {exc}") from None
    try:
        data = strict_json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfilerError(
            f"{src} is not valid JSON (truncated or corrupted?): {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise ProfilerError(f"{src}: {exc}") from None
    if not isinstance(data, dict):
        raise ProfilerError(f"{src}: expected a JSON object, got {type(data).__name__}")

    def need(name: str, ok: bool, expected: str) -> Any:
        if name not in data:
            raise ProfilerError(f"{src}: missing field {name!r} (expected {expected})")
        if not ok:
            raise ProfilerError(f"{src}: {name}={data[name]!r}, expected {expected}")
        return data[name]

    if data.get("format") != BUNDLE_FORMAT:
        raise ProfilerError(f"{src}: format={data.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if data.get("version") not in READABLE_BUNDLE_VERSIONS:
        raise ProfilerError(
            f"{src}: version={data.get('version')!r}; this profilers version reads bundle versions"
            f" {', '.join(map(str, READABLE_BUNDLE_VERSIONS))}"
        )
    weights = data.get("weights", "embedded")
    if weights not in WEIGHTS_MODES:
        raise ProfilerError(f"{src}: weights={weights!r}, expected one of {WEIGHTS_MODES}")
    space = need("space", isinstance(data.get("space"), str) and bool(data.get("space")), "a non-empty string")
    batch = need("batch", _is_int(data.get("batch")) and data.get("batch", 0) >= 1, "an integer >= 1")
    res = need("resolution", _is_int(data.get("resolution")) and data.get("resolution", 0) >= 1, "an integer >= 1")
    precision = need("precision", data.get("precision") in SUPPORTED_PRECISIONS, f"one of {SUPPORTED_PRECISIONS}")
    layout = need("input_layout", data.get("input_layout") in SUPPORTED_LAYOUTS, f"one of {SUPPORTED_LAYOUTS}")
    profile_precision = data.get("profile_precision", "fp32")
    if profile_precision not in PROFILE_PRECISIONS:
        raise ProfilerError(f"{src}: profile_precision={profile_precision!r}, expected one of {PROFILE_PRECISIONS}")
    raw_entries = need(
        "entries", isinstance(data.get("entries"), list) and bool(data.get("entries")), "a non-empty list"
    )
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise ProfilerError(f"{src}: meta={meta!r}, expected an object")

    entries: list[ManifestEntry] = []
    seen: dict[tuple[str, int | None], int] = {}
    missing_files: list[str] = []
    for i, raw in enumerate(raw_entries):
        where = f"{src}: entries[{i}]"
        if not isinstance(raw, dict):
            raise ProfilerError(f"{where}: expected an object, got {raw!r}")
        for name in ("key", "width", "file", "input_shape"):
            if name not in raw:
                raise ProfilerError(f"{where}: missing field {name!r}")
        key, width, file, shape = raw["key"], raw["width"], raw["file"], raw["input_shape"]
        if not isinstance(key, str) or not key:
            raise ProfilerError(f"{where}: key={key!r}, expected a non-empty string")
        where = f"{src}: entries[{i}] (key {key!r})"
        if width is not None and not (_is_int(width) and width >= 1):
            raise ProfilerError(f"{where}: width={width!r}, expected a positive integer or null")
        if not isinstance(file, str) or not file:
            raise ProfilerError(f"{where}: file={file!r}, expected a relative path like 'graphs/x.onnx'")
        rel = PurePosixPath(file)
        if rel.is_absolute() or ".." in rel.parts:
            raise ProfilerError(f"{where}: file={file!r} must be a relative path inside the bundle")
        if not (isinstance(shape, list) and len(shape) == 4 and all(_is_int(d) and d >= 1 for d in shape)):
            raise ProfilerError(f"{where}: input_shape={shape!r}, expected [n, c, h, w] of positive integers")
        if shape[0] != batch:
            raise ProfilerError(f"{where}: input_shape batch {shape[0]} differs from the manifest batch {batch}")
        kw = (key, width)
        if kw in seen:
            raise ProfilerError(f"{where}: duplicate (key, width) = ({key!r}, {width}); first at entries[{seen[kw]}]")
        seen[kw] = i
        path = (root / rel).resolve()
        if not path.is_file():
            missing_files.append(file)
        entries.append(ManifestEntry(key, width, file, tuple(shape), path))

    fixed = {k for k, w in seen if w is None}
    mixed = sorted(k for k, w in seen if w is not None and k in fixed)
    if mixed:
        raise ProfilerError(f"{src}: key(s) {mixed} appear both with width null and with integer widths")
    if missing_files:
        shown = ", ".join(missing_files[:20])
        more = f" (and {len(missing_files) - 20} more)" if len(missing_files) > 20 else ""
        raise ProfilerError(f"{src}: {len(missing_files)} graph file(s) missing from {root}: {shown}{more}")
    return Manifest(
        root.resolve(), space, batch, res, precision, layout, tuple(entries), meta, weights, profile_precision
    )


def manifest_document(
    space: str,
    batch: int,
    resolution: int,
    entries: list[dict[str, Any]],
    meta: dict[str, Any] | None = None,
    weights: str = "generated",
    profile_precision: str = "fp32",
) -> dict[str, Any]:
    """The manifest every bundle writer writes (``entries``: key, width, file, input_shape)."""
    if weights not in WEIGHTS_MODES:
        raise ProfilerError(f"bundle weights={weights!r}, expected one of {WEIGHTS_MODES}")
    if profile_precision not in PROFILE_PRECISIONS:
        raise ProfilerError(f"bundle profile_precision={profile_precision!r}, expected one of {PROFILE_PRECISIONS}")
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "space": space,
        "batch": batch,
        "resolution": resolution,
        "precision": "fp32",
        "profile_precision": profile_precision,
        "input_layout": "NCHW",
        "weights": weights,
        "entries": entries,
        "meta": dict(meta or {}),
    }


def set_manifest_precision(bundle_dir: str | Path, precision: str) -> Path:
    """Mark a written bundle for profiling at ``precision`` (``profile_precision``; its graphs stay the fp32
    sources); atomic."""
    if precision not in PROFILE_PRECISIONS:
        raise ProfilerError(f"bundle profile_precision={precision!r}, expected one of {PROFILE_PRECISIONS}")
    manifest = load_manifest(bundle_dir)  # validates first
    path = manifest.root / MANIFEST_NAME
    data = strict_json.loads(path.read_text(encoding="utf-8"))
    if data.get("profile_precision", "fp32") == precision:
        return path
    data["profile_precision"] = precision
    return write_text_atomic(path, json.dumps(data, indent=1), "bundle manifest")
