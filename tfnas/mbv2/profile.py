"""Build a latency table of an MBV2 space on this machine: bundle + device-side profiler (or torch-cuda), resumably.

Provenance is append-only: every run adds a record to ``meta.builds`` (when, how long the bundle
and the timing took, how many points it measured), and ``build_s`` / ``bundle_s`` are the sums over
the runs that measured something, so a no-op re-run of a complete table changes neither.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from profilers.bundle import set_manifest_precision
from profilers.lut import LatencyTable
from profilers.quantize import BackgroundQuantizer, QuantJob, check_precision, claim_folder, default_settings
from profilers.run import profile_bundle, table_lock
from profilers.timing import PROFILE_PROTOCOL, TimingProtocol
from tfnas.errors import TfnasError
from tfnas.latency.bundle import graph_name
from tfnas.latency.table import WidthGrid, make_grid
from tfnas.mbv2.bundle import plan_bundle, write_bundle
from tfnas.mbv2.space import MBV2Space
from tfnas_base import lock


def _record_build(table: LatencyTable, points_before: int, bundle_s: float, timing_s: float) -> None:
    measured = table.n_points() - points_before
    builds = table.meta.setdefault("builds", [])
    record = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "points_measured": measured,
        "bundle_s": round(bundle_s, 1),
        "timing_s": round(timing_s, 1),
    }
    quant = table.meta.pop("quantize", None)  # int8: the part of timing_s spent quantizing (this run)
    if isinstance(quant, dict) and measured > 0:
        record["quantize_s"] = quant.get("seconds")
        record["quantize"] = quant
    builds.append(record)
    productive = [b for b in builds if b["points_measured"] > 0 or b is builds[0]]
    table.meta["bundle_s"] = round(sum(b["bundle_s"] for b in productive), 1)
    table.meta["build_s"] = round(sum(b["bundle_s"] + b["timing_s"] for b in productive), 1)


def _quantize_while_exporting(
    space: MBV2Space, bundle: Path, batch: int, resolution: int | None, grid: WidthGrid, qdir: Path, precision: str
) -> BackgroundQuantizer | None:
    """INT8: one worker process quantizes the bundle's graphs as the host exports them (the export is one torch
    thread; on a 2-core host the other core would idle), into ``qdir``, where the profiler's pre-pass finds them."""
    if precision != "int8":
        return None
    res = resolution or space.resolution
    settings = default_settings()  # what the profiler's ort backend uses on this machine
    claim_folder(qdir, settings)
    jobs = [
        QuantJob(str(bundle / graph_name(sig.key, w, batch)), sig.input_shape(batch),
                 str(qdir / Path(graph_name(sig.key, w, batch)).name), True)
        for sig, w in plan_bundle(space, grid, res)
    ]  # fmt: skip
    return BackgroundQuantizer(jobs, settings).start()


def profile_table(
    space: MBV2Space,
    out: str | Path,
    batch: int = 1,
    resolution: int | None = None,
    threads: int = 1,
    backend: str = "ort",
    grid: WidthGrid | None = None,
    protocol: TimingProtocol = PROFILE_PROTOCOL,
    resume: bool = True,
    work: str | Path | None = None,
    progress: bool = True,
    precision: str = "fp32",
    quantize_workers: int | None = None,
) -> LatencyTable:
    """Profile ``space`` at (batch, resolution) into ``out`` (resumed when it exists) and return the table.

    ``precision="int8"``: the same fp32 bundle, each graph quantized statically on the device side before it
    is timed (``profilers.quantize``); the table's fingerprint says int8 and records the recipe.
    """
    if threads < 1 or batch < 1:
        raise TfnasError(f"threads {threads} / batch {batch}: both must be >= 1")
    check_precision(precision)
    if precision != "fp32" and backend != "ort":
        raise TfnasError(f"precision {precision} is profiled with --backend ort (ONNX Runtime), not {backend}")
    out = Path(out)
    if resume and out.exists() and out.stat().st_size == 0:  # fail before the bundle export
        raise TfnasError(f"{out} is empty (an interrupted write?); use --no-resume to start over")
    with lock.exclusive(table_lock(out), f"latency table {out}"):
        return _profile(space, out, batch, resolution, threads, backend, grid or make_grid("sparse", precision), protocol,
                        resume, work, progress, precision, quantize_workers)  # fmt: skip


def _profile(
    space: MBV2Space, out: Path, batch: int, resolution: int | None, threads: int, backend: str, grid: WidthGrid,
    protocol: TimingProtocol, resume: bool, work: str | Path | None, progress: bool, precision: str = "fp32",
    quantize_workers: int | None = None,
) -> LatencyTable:  # fmt: skip
    before = 0
    if resume and out.exists():
        before = LatencyTable.load(out).n_points()
    t0 = time.perf_counter()
    if backend == "torch-cuda":
        from tfnas.mbv2.cuda_profile import profile_space

        table = profile_space(space, out, batch, resolution, grid, protocol, resume, progress)
        t1 = t0
    else:
        bundle = Path(work) if work else out.with_name(out.name + ".bundle")
        with tempfile.TemporaryDirectory(prefix="tfnas-int8-") as qdir:
            background = _quantize_while_exporting(space, bundle, batch, resolution, grid, Path(qdir), precision)
            try:
                write_bundle(space, bundle, batch, resolution, grid, progress=progress)
            finally:
                early = background.stop() if background is not None else 0
            set_manifest_precision(bundle, precision)
            t1 = time.perf_counter()
            table = profile_bundle(bundle, out, backend, threads, protocol, progress=progress, resume=resume,
                                   precision=precision, quantize_workers=quantize_workers,
                                   quantized_dir=qdir)  # fmt: skip
        if isinstance(table.meta.get("quantize"), dict):
            table.meta["quantize"]["while_exporting"] = early
    _record_build(table, before, t1 - t0, time.perf_counter() - t1)
    table.save(out)
    return table
