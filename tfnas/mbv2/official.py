"""Import the latency tables of the official TF-NAS code as tfnas latency tables (JSON, schema 2).

The official repository (https://github.com/AberHu/TF-NAS, MIT licence) publishes the two tables its paper
searched with, as Python pickles in ``latency_pkl/``: ``latency_gpu.pkl`` (Titan RTX 24G, batch 32, PyTorch 1.1 +
cuDNN 7.6.0, OpenMP 1 thread) and ``latency_cpu.pkl`` (Intel Xeon Gold 6130 @ 2.10 GHz, batch 1, PyTorch 1.1, MKL
1 thread). Each is an ``OrderedDict``: ``base`` (ms of the parts every network runs: stem conv, first block, last
1x1 conv, average pool, classifier, measured as one sum) and one entry per searchable block shape,
``MBInvertedResBlock_<input size>_<in ch>_<SE ch>_<out ch>_k<kernel>_s<stride>_<act>``, mapping every mid width
1..bound to ms. The official rule (``train_search.py``, ``get_lookup_latency``) is
``latency = base + sum over the active layers of table[key][mid width]``.

Reading never unpickles arbitrary objects: ``OfficialUnpickler`` admits ``collections.OrderedDict`` and nothing
else (plain numbers, strings, dicts and lists need no class), and the file size is capped before reading.

Mapping (our ``tfnas_imagenet`` space is the official one): a searchable layer ``g`` with op ``kK_eE[_se]``
reads ``MBInvertedResBlock_<g.in_size>_<g.in_ch>_<space.se_width(op, g.in_ch)>_<g.out_ch>_kK_s<g.stride>_<g.act>``
(SE width ``in_ch`` for e3, ``2 * in_ch`` for e6, 0 without SE, so ``kK_e3`` and ``kK_e6`` share one key: its
widths run to ``8 * in_ch``). Every published width inside the op's searchable range ``[bound/2, bound]`` is
kept as published; widths outside it are dropped (the published negative values all lie there) and counted; a
width the range needs but the file lacks is reported, never guessed. ``base`` is split into three equal parts
on our three fixed entries (stem, first block, head), whose sum is ``base`` exactly: only the sum is published.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import io
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profilers.lut import LatencyTable
from tfnas import __version__
from tfnas.errors import ConfigError, LatencyTableError
from tfnas.mbv2.keys import Signature, fixed_signatures, space_signatures
from tfnas.mbv2.net import first_block_se_width
from tfnas.mbv2.space import MBV2Space
from tfnas.registry import Registry
from tfnas.utils.io import read_bytes

OFFICIAL_REPO = "https://github.com/AberHu/TF-NAS"
OFFICIAL_LICENCE = "MIT License, Copyright (c) 2020 Aber Hu"
OFFICIAL_LICENCE_TEXT = (  # the repository's LICENSE: its notice goes with every copy of the tables' data
    "MIT License\n\nCopyright (c) 2020 Aber Hu\n\nPermission is hereby granted, free of charge, to any person"
    ' obtaining a copy of this software and associated documentation files (the "Software"), to deal in the'
    " Software without restriction, including without limitation the rights to use, copy, modify, merge, publish,"
    " distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is"
    " furnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission"
    " notice shall be included in all copies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED"
    ' "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF'
    " MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR"
    " COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT"
    " OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE"
    " SOFTWARE."
)
OFFICIAL_COMMIT = "08b31a2e6dc2386ae72890369847c2206745006a"  # the pickles are unchanged since e48fa7c (2020-08-12)
OFFICIAL_RESOLUTION = 224
MAX_BYTES = 16 * 2**20  # the published pickles are 427 kB each
KEY = re.compile(r"^MBInvertedResBlock_(\d+)_(\d+)_(\d+)_(\d+)_k(\d+)_s(\d+)_([A-Za-z0-9]+)$")
RULE = "latency = base + sum over the active layers of table[key][mid width] (train_search.py, get_lookup_latency)"
BASE_PARTS = (
    "stem conv 3x3 (3->32, stride 2, relu) + first block (32->16, mid 32, SE 8, relu) + last 1x1 conv"
    " (320->1280, swish) + average pool + classifier (1280->1000)"
)
TIMING = (
    "per the repository's tools/utils.py (measure_latency_in_ms): 100 warm-up calls, then the mean of 1000 timed"
    " calls of the block's forward, host wall clock (time.time()) around each call, without an explicit CUDA"
    " synchronisation; the settings of the run that made the pickles are not published beyond latency_pkl/README.md"
)


# ---- devices ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialDevice:
    """A device the official tables were measured on: its fingerprint (what the source says) and provenance."""

    name: str
    source_file: str  # the file's name in the official repository
    sha256: str  # of the published file
    described: str  # what latency_pkl/README.md says
    fingerprint: dict[str, Any]
    fingerprint_notes: tuple[str, ...]


_PLACEHOLDERS = "cpu_count, platform and python are required fields of a fingerprint; the source does not publish them"

DEVICES: Registry[OfficialDevice] = Registry("official device")
for _device in (
    OfficialDevice(
        name="titanrtx",
        source_file="latency_pkl/latency_gpu.pkl",
        sha256="743b2d77331a7741eb5c4ff6b3728394e2145407c05bf69f0e0f614193ed2fd3",
        described=(
            "measured with a batch size of 32 on Titan RTX 24G GPU. We set the number of threads for OpenMP to 1"
            " and use Pytorch1.1+cuDNN7.6.0 to measure the latency."
        ),
        fingerprint={
            "identity_version": 2,
            "gpu_name": "NVIDIA TITAN RTX",
            "gpu_model": "Titan RTX 24G",
            "gpu_compute_capability": "7.5",
            "gpu_memory_gb": 24,
            "cpu_model": "not published (the GPU's host)",
            "cpu_count": 1,
            "threads": 1,
            "runtime": "torch",
            "runtime_version": "1.1",
            "provider": "CUDA",
            "cudnn": "7.6.0",
            "batch": 32,
            "resolution": OFFICIAL_RESOLUTION,
            "precision": "fp32",
            "platform": "not published",
            "python": "not published",
            "source": "official TF-NAS table (AberHu/TF-NAS latency_pkl/latency_gpu.pkl), imported",
        },
        fingerprint_notes=(
            "gpu_name is the name NVIDIA's drivers report for a Titan RTX (Turing TU102, compute capability 7.5);"
            " the source says 'Titan RTX 24G'",
            "threads: OpenMP threads, 1 as published; precision fp32: PyTorch's default, not stated by the source",
            _PLACEHOLDERS + " (cpu_count 1 is a placeholder, not the host's core count)",
        ),
    ),
    OfficialDevice(
        name="xeon6130",
        source_file="latency_pkl/latency_cpu.pkl",
        sha256="dfb5363d71a8421a81499c9191431305968fb1d2e1467a6fdd41153d6153ca23",
        described=(
            "measured with a batch size of 1 on Intel Xeon Gold 6130 @ 2.10GHz. We set the number of threads for"
            " MKL to 1 and use Pytorch1.1 to measure the latency."
        ),
        fingerprint={
            "identity_version": 2,
            "cpu_arch": "x86_64",
            "cpu_vendor": "GenuineIntel",
            "cpu_family": "6",
            "cpu_model_id": "85",
            "cpu_model": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
            "cpu_isa": [
                "avx",
                "avx2",
                "avx512bw",
                "avx512dq",
                "avx512f",
                "avx512vl",
                "f16c",
                "fma",
                "sse4.1",
                "sse4.2",
            ],
            "cpu_cache_kb": {"l1d": 32, "l2": 1024, "l3": 22528},
            "cpu_mhz": 2100,
            "cpu_count": 1,
            "threads": 1,
            "runtime": "torch",
            "runtime_version": "1.1",
            "provider": "CPU (MKL)",
            "batch": 1,
            "resolution": OFFICIAL_RESOLUTION,
            "precision": "fp32",
            "platform": "not published",
            "python": "not published",
            "source": "official TF-NAS table (AberHu/TF-NAS latency_pkl/latency_cpu.pkl), imported",
        },
        fingerprint_notes=(
            "cpu_vendor, cpu_family, cpu_model_id, cpu_isa, cpu_cache_kb and cpu_mhz are Intel's specification of"
            " the published model (Xeon Gold 6130: Skylake-SP, family 6 model 85, AVX-512 F/BW/DQ/VL, no VNNI),"
            " not read from the measuring host",
            "threads: MKL threads, 1 as published; precision fp32: PyTorch's default, not stated by the source",
            _PLACEHOLDERS + " (cpu_count 1 is a placeholder, not the host's core count)",
        ),
    ),
):
    DEVICES.add(_device.name, _device)


def device_for_sha256(sha256: str) -> OfficialDevice | None:
    """The device of a published official table with this content hash, or None."""
    return next((d for _, d in DEVICES.items() if d.sha256 == sha256), None)


def get_device(name: str) -> OfficialDevice:
    if name not in DEVICES:
        raise ConfigError(f"unknown official device {name!r}; choose from {', '.join(DEVICES)}")
    return DEVICES[name]


# ---- reading ----------------------------------------------------------------------------------------------------


class OfficialUnpickler(pickle.Unpickler):
    """Unpickles plain data and ``collections.OrderedDict`` only; any other class is refused before it loads."""

    ALLOWED = {("collections", "OrderedDict"): OrderedDict}

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise LatencyTableError(
                f"{self.source}: refusing to unpickle {module}.{name}: an official TF-NAS latency table holds only"
                " an OrderedDict of numbers, so this file is not one (and loading that class could run code)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise LatencyTableError(f"{self.source}: refusing a pickle with persistent ids: not an official latency table")


@dataclass
class OfficialTable:
    """The content of an official table: ``base`` and, per key, {mid width: ms} as published."""

    source: str  # the file's name (or a label for in-memory data)
    sha256: str
    base: float
    entries: dict[str, dict[int, float]]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_official(data: Any, source: str, sha256: str = "") -> OfficialTable:
    """Check the structure of an unpickled official table: {'base': ms, key: {width: ms}}; errors name the key."""
    if not isinstance(data, Mapping):
        raise LatencyTableError(
            f"{source}: an official latency table is a dict of {{'base': ms, key: {{width: ms}}}}, got"
            f" {type(data).__name__}"
        )
    if "base" not in data:
        raise LatencyTableError(f"{source}: no 'base' entry (the latency of the fixed parts); not an official table")
    base = data["base"]
    if not _is_number(base) or not math.isfinite(base) or base <= 0:
        raise LatencyTableError(f"{source}: 'base' = {base!r}; expected a finite number of ms > 0")
    entries: dict[str, dict[int, float]] = {}
    for key, table in data.items():
        if key == "base":
            continue
        if not isinstance(key, str):
            raise LatencyTableError(f"{source}: key {key!r} is not a string; not an official latency table")
        if not isinstance(table, Mapping):
            raise LatencyTableError(f"{source}: entry {key!r} is a {type(table).__name__}, expected {{width: ms}}")
        row: dict[int, float] = {}
        for w, ms in table.items():
            if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise LatencyTableError(f"{source}: entry {key!r}: width {w!r} is not an integer >= 1")
            if not _is_number(ms):
                raise LatencyTableError(f"{source}: entry {key!r}: width {w}: latency {ms!r} is not a number")
            row[w] = float(ms)
        entries[key] = dict(sorted(row.items()))
    return OfficialTable(source, sha256, float(base), entries)


def read_official(path: str | Path, max_bytes: int = MAX_BYTES) -> OfficialTable:
    """Read an official TF-NAS latency pickle safely (size cap, ``OrderedDict`` and plain data only)."""
    p = Path(path)
    raw = read_bytes(p, "official latency table", "pickle (.pkl, the published ones are 427 kB)", max_bytes,
                     LatencyTableError)  # fmt: skip
    if not raw:
        raise LatencyTableError(f"{p} is empty; not an official latency table")
    if raw.lstrip()[:1] == b"{":
        raise LatencyTableError(
            f"{p} looks like JSON (a tfnas table already?), not a Python pickle; expected an official latency_*.pkl"
        )
    try:
        data = OfficialUnpickler(io.BytesIO(raw), str(p)).load()
    except LatencyTableError:
        raise
    except RecursionError:
        raise LatencyTableError(f"{p}: nested too deeply; not an official latency table") from None
    except Exception as exc:  # a corrupt pickle raises many kinds (UnpicklingError, EOFError, ValueError, ...)
        raise LatencyTableError(f"{p} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return parse_official(data, p.name, hashlib.sha256(raw).hexdigest())


# ---- mapping ----------------------------------------------------------------------------------------------------


def official_key(space: MBV2Space, sig: Signature) -> str:
    """The official key a searchable signature reads (see the module doc)."""
    g, op = sig.geometry, sig.op
    assert g is not None and op is not None
    spec = space.ops[op]
    se = space.se_width(op, g.in_ch)
    return f"MBInvertedResBlock_{g.in_size}_{g.in_ch}_{se}_{g.out_ch}_k{spec.kernel}_s{g.stride}_{g.act}"


def official_op(space: MBV2Space, op: str) -> str:
    """The official name of one of our ops: k3_e6_se -> MBI_k3_e6_se."""
    spec = space.ops[op]
    return f"MBI_k{spec.kernel}_e{spec.expansion}" + ("_se" if spec.se else "")


def check_fixed_parts(space: MBV2Space, resolution: int) -> None:
    """The official ``base`` measured one stem, first block and head; refuse a space whose fixed parts differ."""
    st, fb, hd = space.stem, space.first_block, space.head
    ours = {
        "resolution": resolution,
        "input channels": space.in_channels,
        "stem": (st.out, st.kernel, st.stride, st.act),
        "first block": (fb.mid, fb.out, fb.kernel, fb.stride, first_block_se_width(space), fb.act),
        "head": (space.stages[-1].out, hd.out, hd.act, space.num_classes),
    }
    official = {
        "resolution": OFFICIAL_RESOLUTION,
        "input channels": 3,
        "stem": (32, 3, 2, "relu"),
        "first block": (32, 16, 3, 1, 8, "relu"),
        "head": (320, 1280, "swish", 1000),
    }
    diffs = [f"{k}: space {ours[k]!r}, official {official[k]!r}" for k in official if ours[k] != official[k]]
    if diffs:
        raise ConfigError(
            f"space {space.name!r} at {resolution} px differs from the network the official 'base' latency was"
            f" measured for ({BASE_PARTS} at {OFFICIAL_RESOLUTION} px):\n  " + "\n  ".join(diffs)
        )


def split_base(base: float) -> tuple[float, float, float]:
    """Three positive parts (stem, first block, head) whose float sum ``(stem + first) + head`` is ``base``."""
    third = base / 3.0
    head = base - (third + third)  # exact (Sterbenz): base/2 <= 2*third <= base
    return third, third, head


@dataclass
class Conversion:
    """An imported table and what the conversion found (every list empty: a complete, exact import)."""

    table: LatencyTable
    missing_keys: dict[str, list[str]] = field(default_factory=dict)  # official key -> our signatures needing it
    extra_keys: list[str] = field(default_factory=list)  # keys of the file no signature of the space reads
    missing_widths: dict[str, list[int]] = field(default_factory=dict)  # our key -> range ends the file lacks
    gaps: dict[str, int] = field(default_factory=dict)  # our key -> interior widths missing (interpolated)
    bad_values: list[tuple[str, int, float]] = field(default_factory=list)  # (official key, width, ms) in range
    kept_points: int = 0  # (signature, width) points written; e3 and e6 without SE share their key's width 4 x in
    published_widths: int = 0  # (key, width) values in the file
    dropped_widths: int = 0  # published widths outside every searchable range of their key
    nonpositive_dropped: list[tuple[str, int, float]] = field(default_factory=list)  # dropped values <= 0
    most_negative: tuple[str, int, float] | None = None  # over the whole file
    lowest_kept: tuple[str, int, float] | None = None

    @property
    def complete(self) -> bool:
        return not (self.missing_keys or self.missing_widths or self.bad_values)

    def problems(self) -> list[str]:
        """What keeps the table from serving every architecture of the space (empty when complete)."""
        out = [f"missing key {k} (for {', '.join(sigs)})" for k, sigs in self.missing_keys.items()]
        out += [f"missing width(s) {ws} of {k}" for k, ws in self.missing_widths.items()]
        out += [
            f"non-positive or non-finite latency {ms!r} ms at width {w} of {k}, inside the searchable range"
            for k, w, ms in self.bad_values
        ]
        return out

    def summary(self) -> str:
        t = self.table
        layer_keys = [k for k in t.keys() if t.widths(k) != [None]]
        neg = min(self.nonpositive_dropped, key=lambda t: t[2], default=None)
        lines = [
            f"{len(t)} entries ({len(layer_keys)} searchable signatures + 3 fixed parts holding base"
            f" {t.meta['official']['base_ms']:.6g} ms), {self.kept_points} (signature, width) points with the published values, unrounded",
            f"{self.dropped_widths} of the file's {self.published_widths} widths lie outside every searchable range and"
            " were dropped"
            f" ({len(self.nonpositive_dropped)} of them <= 0 ms"
            + (f", the lowest {neg[2]:.4g} ms at width {neg[1]} of {neg[0]})" if neg else ")"),
        ]
        if self.lowest_kept:
            k, w, ms = self.lowest_kept
            lines.append(f"lowest kept latency: {ms:.4g} ms (width {w} of {k})")
        if self.gaps:
            lines.append(
                f"{sum(self.gaps.values())} interior widths unpublished in {len(self.gaps)} signatures:"
                " interpolated between published neighbours"
            )
        for k in self.extra_keys:
            form = "" if KEY.match(k) else " (not of the official key format)"
            lines.append(f"extra key {k}: no signature of the space reads it{form}")
        lines += self.problems()
        return "\n".join(lines)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def convert(
    official: OfficialTable,
    space: MBV2Space,
    device: OfficialDevice,
    command: str | None = None,
    resolution: int | None = None,
) -> Conversion:
    """Map an official table onto ``space``'s signatures; signatures it cannot serve are left out and reported."""
    res = resolution or space.resolution
    if res != OFFICIAL_RESOLUTION:
        raise ConfigError(f"the official tables were measured at {OFFICIAL_RESOLUTION} px, not {res}")
    check_fixed_parts(space, res)
    sigs = [s for s in space_signatures(space, res) if s.width_range is not None]
    used: dict[str, list[Signature]] = {}
    for s in sigs:
        used.setdefault(official_key(space, s), []).append(s)
    conv = Conversion(LatencyTable(space.name, copy.deepcopy(device.fingerprint), _protocol(), complete=False))
    conv.extra_keys = [k for k in official.entries if k not in used]
    conv.published_widths = sum(len(row) for row in official.entries.values())
    for key, row in official.entries.items():  # the lowest value of the file, kept or not
        for w, ms in row.items():
            if conv.most_negative is None or ms < conv.most_negative[2]:
                conv.most_negative = (key, w, ms)
    key_map: dict[str, dict[str, Any]] = {}
    for okey, users in used.items():
        row = official.entries.get(okey)
        if row is None:
            conv.missing_keys[okey] = [s.key for s in users]
            continue
        in_range = _keep_ranges(space, okey, row, users, conv, key_map)
        outside = [w for w in row if w not in in_range]
        conv.dropped_widths += len(outside)
        conv.nonpositive_dropped += [(okey, w, row[w]) for w in outside if not row[w] > 0]
    for k in conv.extra_keys:
        conv.dropped_widths += len(official.entries[k])
        conv.nonpositive_dropped += [(k, w, ms) for w, ms in official.entries[k].items() if not ms > 0]
    fixed = fixed_signatures(space, res)
    for part, ms in zip(("stem", "first", "head"), split_base(official.base), strict=True):
        conv.table.set_entry(fixed[part].key, [None], [ms], [0.0], [0.0], [False], [1000])
    conv.table.complete = conv.complete
    conv.table.meta = _meta(official, device, conv, key_map, command)
    return conv


def _keep_ranges(
    space: MBV2Space, okey: str, row: dict[int, float], users: list[Signature], conv: Conversion,
    key_map: dict[str, dict[str, Any]],
) -> set[int]:  # fmt: skip
    """Enter the published widths of each signature's searchable range that reads ``okey`` (refused: a range
    end the file lacks, or a value <= 0 inside the range); return the widths some range used."""
    in_range: set[int] = set()
    for s in users:
        lo, hi = s.width_range  # type: ignore[misc]
        ws = [w for w in row if lo <= w <= hi]
        in_range.update(ws)
        ends = [w for w in (lo, hi) if w not in row]
        bad = [(okey, w, row[w]) for w in ws if not (math.isfinite(row[w]) and row[w] > 0)]
        if ends:
            conv.missing_widths[s.key] = ends
        if bad:
            conv.bad_values += [b for b in bad if b not in conv.bad_values]
        if ends or bad:
            continue
        if len(ws) < hi - lo + 1:
            conv.gaps[s.key] = hi - lo + 1 - len(ws)
        n = len(ws)
        conv.table.set_entry(s.key, ws, [row[w] for w in ws], [0.0] * n, [0.0] * n, [False] * n, [1000] * n)
        conv.kept_points += n
        low = min((row[w], w) for w in ws)
        if conv.lowest_kept is None or low[0] < conv.lowest_kept[2]:
            conv.lowest_kept = (s.key, low[1], low[0])
        key_map[s.key] = {"official_key": okey, "official_op": official_op(space, s.op or ""), "widths": [lo, hi]}
    return in_range


def _negative_note(conv: Conversion) -> str:
    """The rule for the published values <= 0, with this file's numbers."""
    text = (
        "Negative entries: the official rule sums the published values as they are, and a table of this format"
        " holds latencies > 0 only. "
    )
    if conv.nonpositive_dropped:
        neg = min(conv.nonpositive_dropped, key=lambda t: t[2])
        widest = max(w for _, w, _ in conv.nonpositive_dropped)
        text += (
            f"This file has {len(conv.nonpositive_dropped)} values <= 0 outside every searchable range [bound/2,"
            f" bound], at widths up to {widest} (extrapolated, it seems; the lowest {neg[2]:.4g} ms at width"
            f" {neg[1]} of {neg[0]}): dropped with the other widths no architecture uses. "
        )
    if conv.bad_values:
        text += (
            f"{len(conv.bad_values)} non-positive value(s) lie inside a searchable range: their entries are left out. "
        )
    else:
        low = conv.lowest_kept
        text += (
            "No value inside a searchable range is <= 0"
            + (f" (the lowest kept is {low[2]:.4g} ms, width {low[1]} of {low[0]})" if low else "")
            + ", so the prediction equals the official rule for every architecture of the space. "
        )
    return text + "A non-positive value inside a range is reported and its entry refused, never clamped."


def _protocol() -> dict[str, Any]:
    return {
        "source": "official TF-NAS latency table (imported; not timed by tfnas)",
        "statistic": "mean",
        "warmup": 100,
        "repeats": 1000,
        "timer": "host wall clock (time.time()) around each forward call",
        "spread": "not published",
        "description": TIMING,
    }


def _meta(
    official: OfficialTable,
    device: OfficialDevice,
    conv: Conversion,
    key_map: dict[str, Any],
    command: str | None,
) -> dict[str, Any]:
    return {
        "source": _source_meta(official, device),
        "conversion": {
            "command": command or f"tfnas.mbv2.official.convert(read_official({official.source!r}), ...)",
            "tool": f"tfnas {__version__} (tfnas/mbv2/official.py)",
            "date": _now(),
            "device_preset": device.name,
        },
        "official": _official_meta(official, conv, key_map),
        "notes": _notes(device, conv),
    }


def _source_meta(official: OfficialTable, device: OfficialDevice) -> dict[str, Any]:
    """Where the file came from: its hash, the published file it is (if it is one), licence, paper, device."""
    published = official.sha256 == device.sha256
    return {
        "file": official.source,
        "sha256": official.sha256,
        "published_as": (
            f"{OFFICIAL_REPO}/blob/{OFFICIAL_COMMIT}/{device.source_file}" if published else "not the published file"
        ),
        "repository": OFFICIAL_REPO,
        "licence": OFFICIAL_LICENCE,
        "licence_text": OFFICIAL_LICENCE_TEXT,
        "paper": "Hu et al., TF-NAS: Rethinking Three Search Freedoms of Latency-Constrained Differentiable"
        " Neural Architecture Search, ECCV 2020",
        "device_as_published": device.described,
    }


def _official_meta(official: OfficialTable, conv: Conversion, key_map: dict[str, Any]) -> dict[str, Any]:
    """The official rule and what the conversion kept, dropped and found wrong."""
    neg = conv.most_negative
    return {
        "rule": RULE,
        "base_ms": official.base,
        "base_parts": BASE_PARTS,
        "keys": key_map,
        "published_widths": conv.published_widths,
        "points_kept": conv.kept_points,
        "widths_dropped": conv.dropped_widths,
        "nonpositive_dropped": len(conv.nonpositive_dropped),
        "nonpositive_dropped_max_width": max((w for _, w, _ in conv.nonpositive_dropped), default=None),
        "most_negative_published": None if neg is None else {"key": neg[0], "width": neg[1], "ms": neg[2]},
        "lowest_kept": None
        if conv.lowest_kept is None
        else {"key": conv.lowest_kept[0], "width": conv.lowest_kept[1], "ms": conv.lowest_kept[2]},
        "extra_keys": conv.extra_keys,
        "problems": conv.problems(),
    }


def _notes(device: OfficialDevice, conv: Conversion) -> list[str]:
    """What a reader of the table must know: values, widths, negative entries, fixed parts, spread, device."""
    return [
        "Every latency is the published value, unrounded (ms per forward of the whole batch).",
        "Widths: each op keeps the published widths of its searchable range [bound/2, bound] (our e3 and e6 ops"
        " without SE read the same official key); widths outside every such range are dropped, and a width a"
        " range needs but the file lacks is reported, never guessed.",
        _negative_note(conv),
        "Fixed parts: the published 'base' (" + BASE_PARTS + ") is one sum; it is split into three equal parts"
        " on the stem, first-block and head entries only because this format keys them separately. Their sum"
        " is base exactly; the per-part values mean nothing on their own.",
        "spread_ms and cv are 0 and noisy is false because the source publishes neither spread nor"
        " repeatability: the spread is unknown, not zero. repeats is 1000 after the repository's timing"
        " function (see protocol.description).",
        "No calibration: the published numbers are sums of per-block timings, the rule the paper searched with.",
        "A foreign device: tfnas predict and tfnas search accept this"
        " table (and print its device); measure, calibrate, validate and search.measure_final refuse it on every"
        " machine whose identity differs from the fingerprint's (GPU name and compute capability, or CPU"
        " vendor, family, model and ISA), since nothing timed there compares with it. Its latencies are PyTorch"
        " 1.1 eager timings, not ONNX Runtime or TensorRT ones. Fingerprint notes: "
        + "; ".join(device.fingerprint_notes)
        + ".",
    ]


def import_official(
    path: str | Path,
    space: MBV2Space,
    device: str | None = None,
    command: str | None = None,
    max_bytes: int = MAX_BYTES,
) -> Conversion:
    """Read an official pickle and convert it; ``device`` None: known from the content hash of a published file."""
    official = read_official(path, max_bytes)
    if device is None:
        found = device_for_sha256(official.sha256)
        if found is None:
            raise ConfigError(
                f"{path} is not one of the published official tables (sha256 {official.sha256[:12]}...), so its"
                f" device is unknown; name it with --device ({', '.join(DEVICES)}) if it was measured on one of them"
            )
        dev = found
    else:
        dev = get_device(device)
    return convert(official, space, dev, command)
