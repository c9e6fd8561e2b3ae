"""Which MBV2 latency table describes this machine: a shipped or cached one of the same device, or a fresh one.

``lut: auto`` in a search config asks for this (with the config's ``precision``: an int8 budget
takes only int8 tables). A budget is only true on the device that measured the table, and two
VMs that call their CPU the same name can differ 2-3x, so the choice goes by device identity
(``profilers.device``), then a quick validation on this machine; when neither a shipped nor a
cached table passes, this machine is profiled and calibrated (a couple of minutes) into the
cache, where the next run finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from profilers.device import IDENTITY_FIELDS, isa_class
from profilers.lut import LatencyTable
from profilers.quantize import check_precision
from profilers.timing import table_statistic
from tfnas.latency.measure import drift_settings_for, long_record, reference_record, table_runtime
from tfnas.latency.table import device_match, here_fingerprint, table_precision
from tfnas.latency.validate import Validation, error_report, judge
from tfnas.mbv2.calibrate import calibrate
from tfnas.mbv2.profile import profile_table
from tfnas.mbv2.space import MBV2Space
from tfnas.mbv2.validate import validate_table
from tfnas_base.errors import UserError

log = logging.getLogger(__name__)

# The quick check before a search: 6 networks x 4 rounds (~15 s); the full `tfnas validate` times more.
QUICK_NETWORKS, QUICK_ROUNDS = 6, 4
AUTO_CALIBRATION_NETWORKS = 24  # lut: auto calibrates on fewer networks than `tfnas calibrate` (time)
GOOD_VERDICTS = ("holds", "host-too-noisy")  # a noisy host cannot disprove a table of its own device
# A shared host's speed drifts by several % over minutes; beyond this the quick validation's ratio rescales the fit.
RESCALE_ABOVE = 0.02
RESCALED_SUFFIX = ".now.json"


@dataclass
class TableChoice:
    path: Path
    how: str  # "shipped" | "cached" | "profiled"
    note: str
    validation: Validation | None = None


def cache_dir() -> Path:
    """Where tables profiled on this machine are kept: $TFNAS_CACHE, else ~/.cache/tfnas/tables."""
    env = os.environ.get("TFNAS_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tfnas"
    return base / "tables"


def device_tag(fp: dict) -> str:
    """A short file-name tag of a device identity: ISA class + a hash of the identity fields."""
    ident = {k: fp.get(k) for k in IDENTITY_FIELDS if k in fp}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{isa_class(fp)}-{digest}"


def _candidates(folders: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            out += sorted(
                p for p in folder.glob("*.json") if not p.name.endswith((".validation.json", RESCALED_SUFFIX))
            )
    return out


def matching_tables(
    space: MBV2Space, resolution: int, batch: int, threads: int, folders: Iterable[Path], precision: str = "fp32"
) -> list[LatencyTable]:
    """Complete, calibrated tables of ``space`` at this shape and ``precision`` whose device identity is this
    machine's. The precision is checked here, not by the identity comparison (which asks what this machine
    would record *for that table's* precision): an fp32 table is never chosen for an int8 budget."""
    found = []
    for path in _candidates(folders):
        try:
            table = LatencyTable.load(path)
        except UserError:
            continue  # not a table, or a broken one: never chosen silently
        fp = table.fingerprint
        if table.space != space.name or (fp.get("resolution"), fp.get("batch")) != (resolution, batch):
            continue
        if fp.get("threads") != threads or not table.complete or table.calibration is None:
            continue
        if table_precision(table) != precision:
            continue
        if device_match(table, threads).same_device:
            found.append(table)
    return found


def choose_table(
    space: MBV2Space,
    resolution: int,
    batch: int = 1,
    threads: int = 1,
    shipped: Path | None = None,
    cache: Path | None = None,
    progress: bool = True,
    validate_fn: Callable[[LatencyTable], Validation] | None = None,
    build_fn: Callable[[Path], LatencyTable] | None = None,
    say: Callable[[str], None] = print,
    precision: str = "fp32",
) -> TableChoice:
    """A table that describes this machine at ``precision``: a matching shipped/cached one that passes a quick
    validation, else one profiled and calibrated here now. ``validate_fn`` / ``build_fn`` replace the timing
    (tests)."""
    from tfnas.resources import shipped_dir

    check_precision(precision)
    shipped = shipped if shipped is not None else shipped_dir("latency_tables")
    cache = cache if cache is not None else cache_dir()
    validate_fn = validate_fn or (  # the reference's time here now, unless the table's record is of minutes here
        lambda t: validate_table(
            t, space, QUICK_NETWORKS, QUICK_ROUNDS, seed=2, threads=threads, progress=progress,
            use_table_reference=long_record(t),
        )
    )  # fmt: skip
    for folder, how in ((shipped, "shipped"), (cache, "cached")):
        for table in matching_tables(space, resolution, batch, threads, [folder], precision):
            check = validate_fn(table)
            summary = f"quick validation: {check.verdict}" + (
                f" (MAPE {check.table['mape']:.1f}%, noise floor {check.noise_floor['mape']:.1f}%)"
                if check.table
                else ""
            )
            drifted = check.verdict not in GOOD_VERDICTS and _holds_after_rescaling(check)
            if check.verdict in GOOD_VERDICTS or drifted:
                if drifted:
                    summary += "; the networks' order and shape hold, only the host's speed moved"
                return _use_table(table, check, f"{how} table of this device; {summary}", how, cache, threads)
            say(f"{how} table {table.source} has this machine's identity but {summary}: not used")
    here = here_fingerprint({"batch": batch, "resolution": resolution, "precision": precision}, threads)
    suffix = "" if precision == "fp32" else f"-{precision}"
    path = cache / f"{space.name}-{device_tag(here)}-ort-{threads}t-b{batch}-{resolution}{suffix}.json"
    say(
        f"no {precision} latency table describes this machine ({isa_class(here)}); profiling it into {path}"
        " (a few minutes)"
    )
    build_fn = build_fn or (lambda p: build_table(space, p, resolution, batch, threads, progress, precision))
    build_fn(path)
    return TableChoice(path, "profiled", "profiled and calibrated on this machine now")


def _use_table(table: LatencyTable, check: Validation, note: str, how: str, cache: Path, threads: int) -> TableChoice:
    """The choice of a table that passed its quick validation: rescaled (a copy in ``cache``) to this host's speed
    now, unless its own reference record is of minutes here."""
    path = Path(table.source)
    ratio = check.table.get("ratio", 1.0) if check.table else 1.0
    ratio = ratio if abs(ratio - 1.0) > RESCALE_ABOVE else 1.0
    # a record of minutes of this device stands; a quick validation's 15 s is no better, and under load it baked
    # the load in (measured, Intel AMX host with one CPU-bound process beside it: the reference recorded 0.655 ms
    # over the profile's 0.400, the calibration x1.595)
    seen = None if long_record(table) else check.reference_seen_ms
    if long_record(table) and check.reference_seen_ms:
        note += (
            f"; its reference record ({table.reference['timings']} timings) stands, the reference network"
            f" {check.reference_seen_ms:.4f} ms here now"
        )
        over = drift_settings_for(table).over_record(check.reference_seen_ms, float(table.reference["ms"]))
        if over:  # a slow state the reference does not cancel: its ratio reads 8-10% low
            ratio = 1.0
            note += f" ({over:.2f}x its record: a slow state, so the calibration is not rescaled)"
    if ratio != 1.0 or seen is not None:
        path = rescaled_copy(table, ratio, cache, _seen_reference(table, seen, threads))
        note += f"; its calibration x{ratio:.3f} for this machine's speed now" if ratio != 1.0 else ""
        note += f"; reference network {seen:.4f} ms here now" if seen is not None else ""
        note += f", in {path}"
    return TableChoice(path, how, note, check)


def _holds_after_rescaling(check: Validation) -> bool:
    """The table's shape is right and only the host's speed moved: one ratio brings it within the verdict's limits."""
    if check.verdict != "does-not-hold" or not check.predicted_ms:
        return False
    ratio = check.table["ratio"]
    shape = error_report([p * ratio for p in check.predicted_ms], check.measured_ms)
    return judge(shape, check.noise_floor)[0] == "holds"


def rescaled_copy(table: LatencyTable, ratio: float, folder: Path, reference: dict | None = None) -> Path:
    """A copy of ``table`` whose calibration is scaled by ``ratio`` (measured/predicted here, just now) and,
    with ``reference``, that records the reference network's quiet time seen here now.

    The per-op shape of the table stays; only the whole-network mapping follows the host's current speed,
    as a recalibration would. The fit it replaces goes to ``meta.calibration_history``. The reference time
    is what later drift-cancelled measurements (the search's closed loop, its closing figure) convert with.
    """
    path = folder / (Path(table.source).stem + RESCALED_SUFFIX)
    copy = LatencyTable.from_dict(table.to_dict(), str(path))
    if ratio != 1.0:
        cal = {**copy.calibration, **{k: float(copy.calibration.get(k, 0.0)) * ratio for k in _SCALED}}
        cal["method"] = f"{cal.get('method', '')}; rescaled x{ratio:.4f} by a quick validation on this machine"
        copy.replace_calibration(cal)
    if reference is not None:
        copy.set_reference(reference)
    copy.save(path)
    return path


def _seen_reference(table: LatencyTable, seen: float | None, threads: int) -> dict | None:
    if seen is None:
        return None
    rt = table_runtime(table, threads)
    return reference_record(seen, rt, "quick validation (lut: auto)", table_statistic(table.protocol))


_SCALED = ("scale", "offset_ms", "ms_per_mweight")  # every term of the fit is in ms of this host


def build_table(
    space: MBV2Space,
    path: Path,
    resolution: int,
    batch: int = 1,
    threads: int = 1,
    progress: bool = True,
    precision: str = "fp32",
) -> LatencyTable:
    """Profile and calibrate this machine into ``path`` at ``precision`` (resumes an interrupted build). The
    bundle (fp32 graphs) is shared by both precisions: an int8 build quantizes it on the fly."""
    table = profile_table(
        space, path, batch, resolution, threads, work=path.parent / "bundles" / f"{space.name}-b{batch}-{resolution}",
        progress=progress, precision=precision,
    )  # fmt: skip
    if table.calibration is None:
        calibrate(table, space, AUTO_CALIBRATION_NETWORKS, threads=threads, progress=progress)
        table.save(path)
    return table
