"""The latency lookup table (LUT) file: the single source of truth of its format.

JSON only (never pickle), schema-versioned, validated completely on load, written
atomically. Layout (``schema_version`` 2; version 1 files, whose latencies are medians, still load)::

    {"format": "tfnas.lut", "schema_version": 1, "space": str,
     "fingerprint": {cpu_model, cpu_count, threads, runtime, runtime_version, provider,
                     batch, resolution, precision, platform, python, ...free extras},
     "protocol": {...TimingProtocol settings...},
     "entries": {key: {"widths": [sorted unique ints] or [null],
                       "latency_ms": [...], "spread_ms": [...], "cv": [...],
                       "noisy": [...], "repeats": [...], optional "median_ms": [...]}},
     "created": iso-time, "complete": bool,
     optional: "updated": iso-time, "meta": {...free...},
               "calibration": {"scale": float, "offset_ms": float, ...free details}}

``latency_ms`` holds the protocol's ``statistic`` (a low quantile since version 2,
see ``profilers.timing``), ``median_ms`` the median beside it.

``calibration`` maps the sum of op latencies (plus, optionally, ``ms_per_mweight`` per million
weights the network streams) to the end-to-end latency the runtime
measures (``scale * sum + offset_ms``); prediction applies it when present.

Widths between measured grid points are interpolated piecewise-linearly; outside
the grid is an error (extrapolated latencies would silently mislead the search).
The tfnas host side imports this module too; it must stay free of torch/tfnas.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import difflib
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from profilers.errors import ProfilerError
from profilers.fingerprint import DEFAULT_MATCH_FIELDS, REQUIRED_FINGERPRINT_KEYS, current_fingerprint
from profilers.reference import validate_reference
from profilers.timing import Measurement
from tfnas_base import strict_json
from tfnas_base.atomic import atomic_write_text

LUT_FORMAT = "tfnas.lut"
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
ENTRY_FIELDS: tuple[str, ...] = ("widths", "latency_ms", "spread_ms", "cv", "noisy", "repeats")
OPTIONAL_ENTRY_FIELDS: tuple[str, ...] = ("median_ms",)
_REQUIRED_TOP = (
    "format",
    "schema_version",
    "space",
    "fingerprint",
    "protocol",
    "entries",
    "created",
    "complete",
)
_OPTIONAL_TOP = ("updated", "meta", "calibration", "reference")

Width = int | None

__all__ = [
    "ENTRY_FIELDS",
    "LUT_FORMAT",
    "SCHEMA_VERSION",
    "LatencyTable",
    "current_fingerprint",
]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _validate_entry(src: str, key: str, entry: Any) -> dict[str, list[Any]]:
    """Check one entry; return a normalised copy. Errors name file, key and field."""
    where = f"{src}: entry {key!r}"
    if not isinstance(key, str) or not key:
        raise ProfilerError(f"{src}: entry keys must be non-empty strings, got {key!r}")
    if not isinstance(entry, dict):
        raise ProfilerError(f"{where}: expected an object with fields {list(ENTRY_FIELDS)}, got {entry!r}")
    missing = [f for f in ENTRY_FIELDS if f not in entry]
    if missing:
        raise ProfilerError(f"{where}: missing field(s) {missing}")
    allowed = ENTRY_FIELDS + OPTIONAL_ENTRY_FIELDS
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ProfilerError(f"{where}: unknown field(s) {unknown}; expected only {list(allowed)}")
    present = [f for f in allowed if f in entry]
    for f in present:
        if not isinstance(entry[f], list):
            raise ProfilerError(f"{where}: field {f!r} must be a list, got {entry[f]!r}")
    widths = entry["widths"]
    if not widths:
        raise ProfilerError(f"{where}: 'widths' is empty")
    lengths = {f: len(entry[f]) for f in present}
    if len(set(lengths.values())) != 1:
        raise ProfilerError(f"{where}: list lengths differ {lengths}; every field needs one value per width")
    if widths == [None]:
        pass
    elif all(_is_int(w) and w >= 1 for w in widths):
        if any(b <= a for a, b in zip(widths, widths[1:], strict=False)):
            raise ProfilerError(f"{where}: 'widths' must be sorted ascending without duplicates, got {widths}")
    else:
        raise ProfilerError(f"{where}: 'widths' must be positive integers or exactly [null], got {widths}")
    for f in ("latency_ms", "median_ms"):
        for i, v in enumerate(entry.get(f, ())):
            if not _is_num(v) or v <= 0:
                raise ProfilerError(f"{where}: {f}[{i}]={v!r} (width {widths[i]}); expected a finite number > 0")
    for f in ("spread_ms", "cv"):
        for i, v in enumerate(entry[f]):
            if not _is_num(v) or v < 0:
                raise ProfilerError(f"{where}: {f}[{i}]={v!r} (width {widths[i]}); expected a finite number >= 0")
    for i, v in enumerate(entry["noisy"]):
        if not isinstance(v, bool):
            raise ProfilerError(f"{where}: noisy[{i}]={v!r}; expected true or false")
    for i, v in enumerate(entry["repeats"]):
        if not _is_int(v) or v < 1:
            raise ProfilerError(f"{where}: repeats[{i}]={v!r}; expected an integer >= 1")
    return {f: list(entry[f]) for f in present}


def _validate_calibration(src: str, cal: Any) -> dict[str, Any] | None:
    """``None`` or ``{"scale": > 0, "offset_ms": finite, optional "ms_per_mweight": >= 0, ...}``."""
    if cal is None:
        return None
    if not isinstance(cal, dict):
        raise ProfilerError(f"{src}: 'calibration' must be an object, got {cal!r}")
    for k in ("scale", "offset_ms"):
        if k not in cal or not _is_num(cal[k]) or not math.isfinite(cal[k]):
            raise ProfilerError(f"{src}: calibration.{k}={cal.get(k)!r}; expected a finite number")
    if cal["scale"] <= 0:
        raise ProfilerError(f"{src}: calibration.scale={cal['scale']!r}; expected > 0")
    k = cal.get("ms_per_mweight", 0.0)
    if not _is_num(k) or not math.isfinite(k) or k < 0:
        raise ProfilerError(f"{src}: calibration.ms_per_mweight={k!r}; expected a finite number >= 0")
    return dict(cal)


class LatencyTable:
    """Per-op latencies (ms) keyed by op signature and mid-channel width, with provenance."""

    def __init__(
        self,
        space: str,
        fingerprint: dict[str, Any],
        protocol: dict[str, Any],
        entries: dict[str, dict[str, list[Any]]] | None = None,
        *,
        created: str | None = None,
        updated: str | None = None,
        complete: bool = False,
        meta: dict[str, Any] | None = None,
        calibration: dict[str, Any] | None = None,
        reference: dict[str, Any] | None = None,
        source: str = "<memory>",
    ) -> None:
        self.space = space
        self.fingerprint = dict(fingerprint)
        self.protocol = dict(protocol)
        self.created = created or _now()
        self.updated = updated
        self.complete = complete
        self.meta = dict(meta or {})
        self.calibration = _validate_calibration(source, calibration)
        # the reference network's quiet time on this device when its numbers were made (profilers.reference)
        self.reference = validate_reference(source, reference)
        self.source = source
        self._entries: dict[str, dict[str, list[Any]]] = {}
        for key, entry in (entries or {}).items():
            self._entries[key] = _validate_entry(source, key, entry)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> LatencyTable:
        """Validate a decoded LUT document; every error names ``source`` and the bad field."""
        if not isinstance(data, dict):
            raise ProfilerError(f"{source}: a LUT must be a JSON object, got {type(data).__name__}")
        if data.get("format") != LUT_FORMAT:
            raise ProfilerError(f"{source}: 'format' is {data.get('format')!r}, expected {LUT_FORMAT!r}")
        if data.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise ProfilerError(
                f"{source}: schema_version {data.get('schema_version')!r} is not supported "
                f"(this profilers version reads schema_version {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
            )
        missing = [k for k in _REQUIRED_TOP if k not in data]
        if missing:
            raise ProfilerError(f"{source}: missing top-level field(s) {missing}")
        unknown = sorted(set(data) - set(_REQUIRED_TOP) - set(_OPTIONAL_TOP))
        if unknown:
            raise ProfilerError(f"{source}: unknown top-level field(s) {unknown}; put free data under 'meta'")
        if not isinstance(data["space"], str) or not data["space"]:
            raise ProfilerError(f"{source}: 'space' must be a non-empty string, got {data['space']!r}")
        fp = data["fingerprint"]
        if not isinstance(fp, dict):
            raise ProfilerError(f"{source}: 'fingerprint' must be an object, got {fp!r}")
        fp_missing = [k for k in REQUIRED_FINGERPRINT_KEYS if k not in fp]
        if fp_missing:
            raise ProfilerError(f"{source}: fingerprint is missing {fp_missing}")
        for k in ("threads", "batch", "resolution", "cpu_count"):
            if not _is_int(fp[k]) or fp[k] < 1:
                raise ProfilerError(f"{source}: fingerprint.{k}={fp[k]!r}; expected an integer >= 1")
        for k in ("protocol", "entries"):
            if not isinstance(data[k], dict):
                raise ProfilerError(f"{source}: {k!r} must be an object, got {type(data[k]).__name__}")
        if not isinstance(data["complete"], bool):
            raise ProfilerError(f"{source}: 'complete' must be true or false, got {data['complete']!r}")
        if not isinstance(data["created"], str):
            raise ProfilerError(f"{source}: 'created' must be an ISO time string, got {data['created']!r}")
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ProfilerError(f"{source}: 'meta' must be an object, got {meta!r}")
        return cls(
            data["space"],
            fp,
            data["protocol"],
            data["entries"],
            created=data["created"],
            updated=data.get("updated"),
            complete=data["complete"],
            meta=meta,
            calibration=data.get("calibration"),
            reference=data.get("reference"),
            source=source,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read and validate a LUT file; truncated or corrupted files give an error naming the file."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise ProfilerError(f"LUT file {p} does not exist") from None
        except OSError as exc:
            raise ProfilerError(f"cannot read LUT file {p}: {exc}") from None
        if raw[:1] == b"\x80" or raw[:2] in (b"(d", b"(l", b"}q", b"]q"):  # pickle protocols 2-5 / 0-1
            raise ProfilerError(
                f"{p} is not a JSON latency table: it looks like a Python pickle, which is never loaded"
                " (it can run code); export the table as JSON"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProfilerError(f"LUT file {p} is not a JSON latency table (not UTF-8 text: {exc.reason})") from None
        if not text.strip():
            raise ProfilerError(f"LUT file {p} is empty (truncated write?)")
        try:
            data = strict_json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfilerError(
                f"LUT file {p} is not valid JSON (truncated or corrupted?): {exc.msg} "
                f"at line {exc.lineno}, column {exc.colno}"
            ) from None
        except ValueError as exc:
            raise ProfilerError(f"LUT file {p}: {exc}") from None
        return cls.from_dict(data, source=str(p))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document (entries sorted by key for stable diffs)."""
        doc: dict[str, Any] = {
            "format": LUT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "space": self.space,
            "fingerprint": self.fingerprint,
            "protocol": self.protocol,
            "created": self.created,
            "complete": self.complete,
        }
        if self.updated is not None:
            doc["updated"] = self.updated
        if self.meta:
            doc["meta"] = self.meta
        if self.calibration is not None:
            doc["calibration"] = _validate_calibration(self.source, self.calibration)
        if self.reference is not None:
            doc["reference"] = validate_reference(self.source, self.reference)
        doc["entries"] = {k: self._entries[k] for k in sorted(self._entries)}
        return doc

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write atomically: temp file in the same folder, fsync, ``os.replace``.

        On any failure the previous file at ``path`` is left untouched.
        """
        if path is None:
            if self.source.startswith("<"):
                raise ProfilerError("LatencyTable.save: no path given and the table was not loaded from a file")
            path = self.source
        p = Path(path)
        self.updated = _now()
        try:
            text = _dumps(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise ProfilerError(f"cannot serialise LUT for {p}: {exc}") from None
        write_text_atomic(p, text + "\n", "LUT file")
        self.source = str(p)
        return p

    # --------------------------------------------------------------- queries
    def keys(self) -> list[str]:
        """All op-signature keys, sorted."""
        return sorted(self._entries)

    def has(self, key: str) -> bool:
        return key in self._entries

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def n_points(self) -> int:
        """Number of measured (key, width) points."""
        return sum(len(e["widths"]) for e in self._entries.values())

    def entry(self, key: str) -> dict[str, list[Any]]:
        """A copy of one entry's lists."""
        return {f: list(v) for f, v in self._get(key).items()}

    def widths(self, key: str) -> list[Width]:
        """Measured grid widths of ``key`` ([None] for fixed-width parts)."""
        return list(self._get(key)["widths"])

    def measured(self, key: str, width: Width) -> bool:
        """True when exactly this (key, width) point was measured (resume uses this)."""
        e = self._entries.get(key)
        return e is not None and width in e["widths"]

    def latency(self, key: str, width: Width = None) -> float:
        """Latency in ms; piecewise-linear between grid widths, error outside the grid."""
        e = self._get(key)
        ws, lat = e["widths"], e["latency_ms"]
        if ws == [None]:
            if width is not None:
                raise ProfilerError(
                    f"LUT {self.source}: key {key!r} is a fixed part measured without a width; got width={width}"
                )
            return float(lat[0])
        if width is None:
            raise ProfilerError(f"LUT {self.source}: key {key!r} needs a width (measured widths {ws[0]}..{ws[-1]})")
        if not _is_num(width):
            raise ProfilerError(f"LUT {self.source}: key {key!r}: width must be a number, got {width!r}")
        if width < ws[0] or width > ws[-1]:
            raise ProfilerError(
                f"LUT {self.source}: width {width} of key {key!r} is outside the measured range "
                f"[{ws[0]}, {ws[-1]}]; extrapolation is not allowed"
            )
        i = bisect.bisect_left(ws, width)
        if ws[i] == width:
            return float(lat[i])
        w0, w1 = ws[i - 1], ws[i]
        t = (width - w0) / (w1 - w0)
        return float(lat[i - 1] + t * (lat[i] - lat[i - 1]))

    def missing(self, keys_widths: Iterable[tuple[str, Width]]) -> list[tuple[str, Width]]:
        """The (key, width) pairs this table cannot answer (absent key or width off the grid)."""
        out: list[tuple[str, Width]] = []
        for key, width in keys_widths:
            e = self._entries.get(key)
            if e is None:
                out.append((key, width))
                continue
            ws = e["widths"]
            if ws == [None] or width is None:
                ok = ws == [None] and width is None
            else:
                ok = ws[0] <= width <= ws[-1]
            if not ok:
                out.append((key, width))
        return out

    def fingerprint_mismatch(self, current: dict[str, Any], fields: Sequence[str] = DEFAULT_MATCH_FIELDS) -> list[str]:
        """Readable differences between this table's fingerprint and ``current`` on ``fields``."""
        diffs: list[str] = []
        for f in fields:
            mine = self.fingerprint.get(f, "<absent>")
            theirs = current.get(f, "<absent>")
            if mine != theirs:
                diffs.append(f"{f}: LUT has {mine!r}, current is {theirs!r}")
        return diffs

    def check_shape(self, batch: int, resolution: int) -> None:
        """Raise unless the table was measured at this deployment batch and resolution."""
        b, r = self.fingerprint.get("batch"), self.fingerprint.get("resolution")
        if (b, r) != (batch, resolution):
            raise ProfilerError(
                f"LUT {self.source} was measured at batch {b}, resolution {r}; "
                f"needed batch {batch}, resolution {resolution}"
            )

    # -------------------------------------------------------------- updates
    def set_entry(
        self,
        key: str,
        widths: Sequence[Width],
        latency_ms: Sequence[float],
        spread_ms: Sequence[float],
        cv: Sequence[float],
        noisy: Sequence[bool],
        repeats: Sequence[int],
        median_ms: Sequence[float] | None = None,
    ) -> None:
        """Replace one entry entirely (validated like a loaded file)."""
        entry = {
            "widths": list(widths),
            "latency_ms": [float(x) for x in latency_ms],
            "spread_ms": [float(x) for x in spread_ms],
            "cv": [float(x) for x in cv],
            "noisy": [bool(x) for x in noisy],
            "repeats": [int(x) for x in repeats],
        }
        if median_ms is not None:
            entry["median_ms"] = [float(x) for x in median_ms]
        self._entries[key] = _validate_entry(self.source, key, entry)

    def add_measurement(self, key: str, width: Width, m: Measurement) -> None:
        """Insert or replace the point (key, width), keeping widths sorted."""
        e = self._entries.get(key)
        if e is None:
            e = {f: [] for f in ENTRY_FIELDS + OPTIONAL_ENTRY_FIELDS}
        new = {f: list(v) for f, v in e.items()}
        new.setdefault("median_ms", list(new["latency_ms"]))  # an entry of a version-1 table: its values are medians
        values = {
            "latency_ms": sig(m.latency_ms),
            "median_ms": sig(m.median_ms),
            "spread_ms": sig(m.spread_ms),
            "cv": sig(m.cv),
            "noisy": bool(m.noisy),
            "repeats": int(m.repeats),
        }
        ws = new["widths"]
        if width in ws:
            i = ws.index(width)
            for f, v in values.items():
                new[f][i] = v
        else:
            if ws and (width is None or None in ws):
                raise ProfilerError(
                    f"LUT {self.source}: key {key!r} cannot mix a fixed (null) width with integer widths "
                    f"(has {ws}, adding {width!r})"
                )
            i = bisect.bisect_left(ws, width) if width is not None else 0
            ws.insert(i, width)
            for f, v in values.items():
                new[f].insert(i, v)
        self._entries[key] = _validate_entry(self.source, key, new)

    def replace_calibration(self, calibration: dict[str, Any]) -> None:
        """Install a new fit; the one it replaces goes to ``meta.calibration_history`` (provenance is append-only)."""
        new = _validate_calibration(self.source, calibration)
        if self.calibration is not None:
            self.meta.setdefault("calibration_history", []).append({**self.calibration, "replaced": _now()})
        self.calibration = new

    def set_reference(self, reference: dict[str, Any]) -> None:
        """Record the reference network's quiet time now; the record it replaces goes to ``meta.reference_history``."""
        new = validate_reference(self.source, reference)
        if self.reference is not None:
            self.meta.setdefault("reference_history", []).append({**self.reference, "replaced": _now()})
        self.reference = new

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    # -------------------------------------------------------------- helpers
    def _get(self, key: str) -> dict[str, list[Any]]:
        try:
            return self._entries[key]
        except KeyError:
            close = difflib.get_close_matches(key, list(self._entries), n=3)
            hint = f"; closest keys: {close}" if close else ""
            raise ProfilerError(f"LUT {self.source} has no entry for key {key!r}{hint}") from None

    def __repr__(self) -> str:
        return (
            f"LatencyTable(space={self.space!r}, keys={len(self)}, points={self.n_points()}, "
            f"complete={self.complete}, source={self.source!r})"
        )


_EXPANDED = {(), ("entries",), ("meta",), ("meta", "passes")}


def _dumps(doc: dict[str, Any]) -> str:
    """JSON with one line per top-level field, entry and pass record: diffable and fast to write."""

    def fmt(value: Any, path: tuple[str, ...], depth: int) -> str:
        if path in _EXPANDED and isinstance(value, dict) and value:
            pad = " " * (depth + 1)
            inner = ",\n".join(f"{pad}{json.dumps(k)}: {fmt(v, (*path, k), depth + 1)}" for k, v in value.items())
            return "{\n" + inner + "\n" + " " * depth + "}"
        return json.dumps(value, separators=(", ", ": "), allow_nan=False)

    return fmt(doc, (), 0)


def write_text_atomic(path: str | Path, text: str, what: str) -> Path:
    """Write ``text`` to ``path`` through a synced temporary file and a rename: on any failure the previous
    file is left untouched; an ``OSError`` becomes a ``ProfilerError`` naming ``what`` and the path."""
    p = Path(path)
    try:  # tables and manifests are shareable artefacts: a rewrite keeps the file's mode, the rename is synced
        atomic_write_text(p, text, keep_mode=True, sync_dir=True)
    except OSError as exc:
        raise ProfilerError(f"cannot write {what} {p}: {exc}") from None
    return p


def sig(x: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits (measurement noise is far above that)."""
    return float(f"{x:.{digits}g}")
