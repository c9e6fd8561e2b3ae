"""Host-side access to a latency table: checked loading, width grids and alignment-aware lookups.

Why alignment-aware: ONNX Runtime's CPU kernels run a convolution in a blocked
(NCHWc) layout only when its channel count is a multiple of 4, padding it up to
the SIMD block (16 floats with AVX-512, 8 with AVX2). Latency against mid width
is therefore two curves: multiples of ``align`` follow a staircase of the padded
width (fast), all other widths a smooth, ~2-3x slower line. Interpolating
linearly across both would be wrong by up to 200%; we interpolate within the
width's own class instead, and the sparse grid measures points of both classes.
"""

from __future__ import annotations

import bisect
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from profilers.device import DeviceMatch, compare, describe_device
from profilers.fingerprint import current_fingerprint, onnxruntime_version
from profilers.lut import LatencyTable
from tfnas.errors import LatencyTableError
from tfnas.registry import Registry
from tfnas.resources import find_table
from tfnas_base.errors import UserError

Width = int | None
log = logging.getLogger(__name__)


class FingerprintWarning(UserWarning):
    """The table was measured on another device, runtime or thread count than the current one."""


# ---- width grids ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WidthGrid:
    """Which mid widths of [lo, hi] a profile measures, and how lookups between them interpolate.

    ``align``: widths that are multiples of it form their own latency class (1 disables classes).
    ``block``: an aligned width costs as much as its width rounded up to ``block``; None: the SIMD block of
    the table's device, known only from its fingerprint (``table_grid`` fills it in; a bundle written on one
    machine may be profiled on another).
    ``intervals``: about how many segments each class's curve gets across [lo, hi].
    """

    name: str = "sparse"
    align: int = 4
    block: int | None = 16
    intervals: int = 8

    def widths(self, lo: int, hi: int) -> list[int]:
        return GRID_BUILDERS[self.name](self, lo, hi)

    @property
    def plan_block(self) -> int:
        """The block the measured widths are laid out on; 16 when the device's is not known yet (its
        multiples are multiples of 8 and 4 too, so the points serve any block that divides it)."""
        return max(1, self.block or PLAN_BLOCK)

    def runtime_width(self, width: int) -> int:
        """The width the runtime computes with: an aligned width is padded up to ``block`` (zero channels
        whose weights are streamed like real ones), any other width runs as it is."""
        a, b = max(1, self.align), self.plan_block
        return int(math.ceil(width / b)) * b if a > 1 and width % a == 0 else int(width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> WidthGrid:
        if not isinstance(data, dict) or data.get("name") not in GRID_BUILDERS:
            return cls("dense", 1, 1, 1)
        known = {k: data[k] for k in ("name", "align", "block", "intervals") if k in data}
        return cls(**known)


GridBuilder = Callable[[WidthGrid, int, int], list[int]]
GRID_BUILDERS: Registry[GridBuilder] = Registry("width grid")


@GRID_BUILDERS.register("sparse")
def _sparse_widths(grid: WidthGrid, lo: int, hi: int) -> list[int]:
    if hi - lo <= 2:
        return list(range(lo, hi + 1))
    align, block = max(1, grid.align), grid.plan_block
    step = max(block, int(math.ceil((hi - lo) / max(1, grid.intervals) / block)) * block)
    first = int(math.ceil(lo / block)) * block
    anchors = list(range(first, hi + 1, step))
    points = {lo, hi, *anchors}
    if align > 1:  # the unaligned class: its ends plus one point beside every anchor
        off = max(1, align // 2)
        ends = (hi - 1,) if first == lo else (lo + 1, hi - 1)
        points |= {w for w in (*ends, *(a + off for a in anchors)) if lo <= w <= hi and w % align}
    return sorted(points)


@GRID_BUILDERS.register("dense")
def _dense_widths(grid: WidthGrid, lo: int, hi: int) -> list[int]:
    return list(range(lo, hi + 1))


# Sparse-grid defaults per precision, from width scans on ONNX Runtime (benchmarks/latency/README.md, "Width
# classes"). fp32 (NCHWc kernels): a width that is a multiple of 4 costs what its width padded to the device's
# SIMD block costs (``device_block``: 8 floats with AVX2, 16 with AVX-512). int8 (QDQ, u8s8 kernels): nothing is
# padded; multiples of 16 run up to 1.7x faster than the 4-aligned widths beside them (multiples of 8 in
# between), so 16 is the fast class a search should pick from.
GRID_DEFAULTS: dict[str, dict[str, int | None]] = {
    "fp32": {"align": 4, "block": None},
    "int8": {"align": 16, "block": 16},
}
PLAN_BLOCK = 16  # where the measured widths lie when the device's block is not known when the bundle is written


def device_block(fingerprint: dict[str, Any]) -> int:
    """Floats per SIMD register of an ONNX Runtime CPU table's device, the NCHWc block its convolutions pad
    to: 16 with AVX-512, 8 with AVX2 (both measured). Other devices (GPUs, ARM) keep ``PLAN_BLOCK``:
    not measured."""
    isa = fingerprint.get("cpu_isa") or ()
    if fingerprint.get("runtime") != "onnxruntime":
        return PLAN_BLOCK
    return 16 if "avx512f" in isa else 8 if "avx2" in isa else PLAN_BLOCK


def make_grid(name: str = "sparse", precision: str = "fp32", **options: Any) -> WidthGrid:
    """The width grid ``name``; options left None take the ``GRID_DEFAULTS`` of ``precision``."""
    if name not in GRID_BUILDERS:
        raise LatencyTableError(f"unknown width grid {name!r}; choose from {', '.join(GRID_BUILDERS)}")
    if precision not in GRID_DEFAULTS:
        raise LatencyTableError(
            f"no width grid defaults for precision {precision!r}; choose from {', '.join(GRID_DEFAULTS)}"
        )
    if name == "dense":
        return WidthGrid("dense", 1, 1, 1)
    given = {k: v for k, v in options.items() if v is not None}
    return WidthGrid(name, **{**GRID_DEFAULTS[precision], **given})


def table_grid(table: LatencyTable) -> WidthGrid:
    """The grid a table was profiled with (recorded in the bundle meta; dense when unknown), with the block of
    the table's device where the grid left it to the device."""
    meta = table.meta.get("bundle_meta", {}) if isinstance(table.meta, dict) else {}
    grid = WidthGrid.from_dict(meta.get("grid") if isinstance(meta, dict) else None)
    return grid if grid.block is not None else replace(grid, block=device_block(table.fingerprint))


# ---- lookups ----------------------------------------------------------------------------------------------


def _interp(xs: list[int], ys: list[float], x: float) -> float:
    """Piecewise-linear in (xs, ys); the end segments extend to x outside [xs[0], xs[-1]]."""
    if len(xs) == 1:
        return ys[0]
    i = min(max(1, bisect.bisect_left(xs, x)), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class Lookup:
    """Latency (ms) of (key, width) from a table; build once, call many times (e.g. in a search loop)."""

    def __init__(self, table: LatencyTable, grid: WidthGrid | None = None):
        self.table = table
        self.grid = grid or table_grid(table)
        self._cache: dict[str, tuple] = {}

    def _classes(self, key: str) -> tuple:
        c = self._cache.get(key)
        if c is None:
            e = self.table.entry(key)
            ws, lat = e["widths"], e["latency_ms"]
            if ws == [None]:
                c = (None, lat[0])
            else:
                a = max(1, self.grid.align)
                al = [(w, v) for w, v in zip(ws, lat) if w % a == 0]
                un = [(w, v) for w, v in zip(ws, lat) if w % a]
                c = (
                    ws,
                    dict(zip(ws, lat)),
                    [w for w, _ in al],
                    [v for _, v in al],
                    [w for w, _ in un],
                    [v for _, v in un],
                )
            self._cache[key] = c
        return c

    def __call__(self, key: str, width: Width = None) -> float:
        c = self._classes(key)
        if c[0] is None:
            if width is not None:
                raise LatencyTableError(f"LUT {self.table.source}: key {key!r} is a fixed part; got width {width}")
            return float(c[1])
        ws, exact, al_w, al_v, un_w, un_v = c
        if width is None or not ws[0] <= width <= ws[-1]:
            raise LatencyTableError(
                f"LUT {self.table.source}: width {width} of key {key!r} is outside the measured range"
                f" [{ws[0]}, {ws[-1]}]"
            )
        if width in exact:
            return float(exact[width])
        a = self.grid.align
        if a > 1 and width % a == 0 and al_w:  # an aligned width runs padded to the SIMD block
            return float(_interp(al_w, al_v, min(self.grid.runtime_width(width), ws[-1])))
        if a > 1 and width % a and un_w:
            return float(_interp(un_w, un_v, width))
        return float(_interp(ws, [exact[w] for w in ws], width))


def as_lookup(table: LatencyTable | Lookup) -> Lookup:
    return table if isinstance(table, Lookup) else Lookup(table)


# ---- loading ----------------------------------------------------------------------------------------------


def _format_missing(missing: Iterable[tuple[str, Width]], limit: int = 25) -> str:
    items = list(missing)
    lines = [f"  {k}" + ("" if w is None else f" (width {w})") for k, w in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)


def here_fingerprint(fp: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """This machine's fingerprint for a table's runtime, provider and shape (what a timing here would record)."""
    runtime = fp.get("runtime") or "onnxruntime"
    extra: dict[str, Any] = {}
    if fp.get("gpu_name") or fp.get("gpu_model") or runtime in ("tensorrt", "torch"):
        extra = _gpu_identity()
    return current_fingerprint(
        threads=threads if threads is not None else fp.get("threads", 1),
        provider=fp.get("provider", "CPUExecutionProvider"),
        batch=fp.get("batch", 1),
        resolution=fp.get("resolution", 224),
        precision=fp.get("precision", "fp32"),
        runtime=runtime,
        runtime_version=_runtime_version(runtime, fp.get("runtime_version")),
        **extra,
    )


def _runtime_version(runtime: str, table_version: Any) -> Any:
    """The version of ``runtime`` on this machine; a runtime tfnas does not know keeps the table's (unverifiable)."""
    if runtime == "onnxruntime":
        return onnxruntime_version()
    if runtime == "torch":
        import torch

        return torch.__version__.split("+")[0]
    if runtime == "tensorrt":
        try:
            import tensorrt  # optional extra; absent here means no TensorRT timing could match the table
        except ImportError:
            return "not installed"
        return tensorrt.__version__
    return table_version


def _gpu_identity() -> dict[str, Any]:
    """The GPU's identity fields, or ``gpu_name: "none"`` where no CUDA GPU is visible."""
    try:
        import torch

        if torch.cuda.is_available():
            return {
                "gpu_name": torch.cuda.get_device_name(0),
                "gpu_compute_capability": "{}.{}".format(*torch.cuda.get_device_capability(0)),
            }
    except Exception:  # a broken CUDA install is "no GPU" for this comparison
        pass
    return {"gpu_name": "none", "gpu_compute_capability": "none"}


def device_match(table: LatencyTable, threads: int | None = None) -> DeviceMatch:
    """How the table's device compares with this machine (identity and informational differences)."""
    return compare(table.fingerprint, here_fingerprint(table.fingerprint, threads))


def table_precision(table: LatencyTable) -> str:
    """The precision of a table's latencies (fp32 for tables written before the field mattered)."""
    return str(table.fingerprint.get("precision") or "fp32")


def table_device(table: LatencyTable) -> str:
    """One line: the device, runtime and shape the table's latencies (and so a budget) refer to."""
    return describe_device(table.fingerprint)


def require_this_device(table: LatencyTable, action: str, allow_foreign: bool = False, threads: int | None = None):
    """Refuse to compare timings taken here with a table of another device; return the comparison.

    A table whose device is unverifiable (written before device identities) passes with a note on stderr.
    """
    return _require_device(table, device_match(table, threads), action, allow_foreign)


def _require_device(table: LatencyTable, match: DeviceMatch, action: str, allow_foreign: bool) -> DeviceMatch:
    if not match.verifiable:
        log.warning("note: LUT %s: %s", table.source, match.describe())
    elif match.identity and not allow_foreign:
        raise LatencyTableError(
            f"LUT {table.source} was measured on another device than this machine, so {action} here would"
            f" compare its latencies with timings of a different device:\n  "
            + "\n  ".join(match.identity)
            + "\nprofile this machine (`tfnas profile`), pick a table of this device, or pass"
            " --allow-foreign-table to go on anyway"
        )
    elif match.identity:
        log.warning("LUT %s is from another device (allowed): %s", table.source, "; ".join(match.identity))
    return match


# ---- opening: resolve, load and check in one pass ------------------------------------------------------------


class TableNeeds(Protocol):
    """What a family asks of a table (``mbv2.keys.SpaceNeeds``): profiled for the space ``name``, answering
    every (key, width) its architectures use at a deployment resolution."""

    @property
    def name(self) -> str: ...

    def required_entries(self, resolution: int | None) -> list[tuple[str, Width]]: ...


Needs = TableNeeds | Callable[[LatencyTable], TableNeeds]  # a callable: needs that depend on the table's own space


def open_table(
    name_or_path: str | Path,
    needs: Needs | None = None,
    *,
    batch: int | None = None,
    resolution: int | None = None,
    precision: str | None = None,
    threads: int | None = None,
    warn_device: bool = False,
    require_device: str | None = None,
    allow_foreign: bool = False,
) -> LatencyTable:
    """A latency table (a path, or a shipped table's name), loaded and checked in one pass.

    Checked, in this order: its ``precision`` (an fp32 table never stands for an int8 deployment, nor the
    reverse), its shape (``batch``, ``resolution``), that it serves ``needs`` (the space it was profiled for,
    no missing entries: the message lists them) and its device: ``warn_device`` warns
    (``FingerprintWarning``) when it is not this machine, ``require_device`` (the action, e.g. "measuring")
    refuses it unless ``allow_foreign``. Each failure is a ``LatencyTableError`` that says what to do.
    """
    table = LatencyTable.load(find_table(name_or_path))
    _check_precision(table, name_or_path, precision)
    _check_shape(table, batch, resolution)
    if needs is not None:
        _check_entries(table, name_or_path, needs(table) if callable(needs) else needs, resolution)
    if warn_device or require_device:
        match = device_match(table, threads)
        if warn_device and match.identity:
            warnings.warn(
                f"LUT {name_or_path} was measured on another device/runtime; its latencies describe that device,"
                " not this machine:\n  " + "\n  ".join(match.identity),
                FingerprintWarning,
                stacklevel=2,
            )
        if require_device:
            _require_device(table, match, require_device, allow_foreign)
    return table


def _check_precision(table: LatencyTable, path: str | Path, precision: str | None) -> None:
    if precision is not None and table_precision(table) != precision:
        raise LatencyTableError(
            f"LUT {path} holds {table_precision(table)} latencies, but {precision} was asked for: a table of"
            f" one precision says nothing about the other (int8 ran 0.8x fp32 on an AVX-512 VNNI host, 0.85-1.2x on"
            f" an AVX2 one, depending on the network); profile one with `tfnas profile --precision {precision}`"
        )


def _check_shape(table: LatencyTable, batch: int | None, resolution: int | None) -> None:
    if batch is None and resolution is None:
        return
    fp = table.fingerprint
    want_b = batch if batch is not None else fp.get("batch")
    want_r = resolution if resolution is not None else fp.get("resolution")
    try:
        table.check_shape(want_b, want_r)
    except UserError as exc:
        raise LatencyTableError(f"{exc}; profile a table at that shape (tfnas profile --batch/--resolution)") from None


def _check_entries(table: LatencyTable, path: str | Path, needs: TableNeeds, resolution: int | None) -> None:
    res = resolution or table.fingerprint.get("resolution")
    if table.space != needs.name:
        raise LatencyTableError(f"LUT {path} was profiled for space {table.space!r}, not {needs.name!r}")
    missing = table.missing(needs.required_entries(res))
    if missing:
        raise LatencyTableError(
            f"LUT {path} lacks {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} that space"
            f" {needs.name!r} at resolution {res} needs (key, width range end):\n{_format_missing(missing)}\n"
            "re-run `tfnas profile` with the same --out to measure them (it resumes)"
        )
