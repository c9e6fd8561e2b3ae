"""Calibrate a DARTS latency table on evaluation networks of random genotypes timed end to end here.

A whole network pays for what no per-op graph contains: node sums, concatenations, the
graph's own overhead, and streaming all of its weights through the caches. As for the MBV2
tables, the family-free fit (``tfnas.latency.calibrate``), ``measured ~ scale * sum + ms_per_mweight *
Mparams + offset``, is fitted on random genotypes' eval networks, stored in the table, and applied by
``tfnas.darts.latency.genotype_latency``.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from profilers.lut import LatencyTable
from profilers.timing import TimingProtocol
from tfnas.darts.latency import deployed_net, genotype_mparams, genotype_sum
from tfnas.darts.shapes import DeployShape
from tfnas.darts.space import CellSpace, Genotype, random_genotype
from tfnas.export.onnx import export_onnx
from tfnas.latency.calibrate import error_stats, fit_calibration
from tfnas.latency.measure import (
    Runtime,
    TimingSettings,
    onnx_drift_cancelled,
    onnx_timer,
    protocol_for,
    reference_record,
)


def measure_genotypes(
    genotypes: list[Genotype],
    shape: DeployShape,
    threads: int = 1,
    rounds: int = 3,
    seed: int = 0,
    protocol: TimingProtocol | None = None,
    progress: bool = False,
) -> tuple[list[float], float]:
    """End-to-end latency of each eval network (ms, the protocol's statistic, drift-cancelled over interleaved
    rounds: ``profilers.drift``) and the reference network's quiet time seen over the measurement."""
    in_shape = (shape.batch, shape.in_channels, shape.resolution, shape.resolution)
    with tempfile.TemporaryDirectory(prefix="tfnas-darts-measure-") as tmp:
        timers = []
        for i, g in enumerate(genotypes):
            path = export_onnx(deployed_net(g, shape), Path(tmp) / f"{i}.onnx", in_shape)
            timers.append(onnx_timer(path, in_shape, "ort", threads))
        figs, seen = onnx_drift_cancelled(timers, threads, TimingSettings(rounds, seed, protocol, progress))
    return [f.value_ms for f in figs], seen


def calibrate_darts(
    table: LatencyTable,
    space: CellSpace,
    shape: DeployShape,
    n: int = 24,
    seed: int = 0,
    threads: int = 1,
    rounds: int = 3,
    measured: list[float] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit ``table.calibration`` on ``n`` random genotypes' eval networks timed here; return it.

    ``measured`` replaces the timing (tests). The fit it replaces is kept in ``meta.calibration_history``.
    """
    rng = random.Random(seed)
    genotypes = [random_genotype(space, rng) for _ in range(n)]
    t0 = time.perf_counter()
    sums = [genotype_sum(g, shape, table) for g in genotypes]
    mparams = [genotype_mparams(g, shape) for g in genotypes]
    if measured is None:
        protocol = protocol_for(table.protocol)
        measured, seen = measure_genotypes(genotypes, shape, threads, rounds, seed, protocol, progress)
        rt = Runtime("ort", threads)
        table.set_reference(reference_record(seen, rt, f"DARTS calibration ({n} eval nets)", protocol.statistic))
    fit = fit_calibration(sums, mparams, measured)
    after = [fit.total(s, w) for s, w in zip(sums, mparams)]
    cal = {
        "scale": fit.scale,
        "offset_ms": fit.offset_ms,
        "ms_per_mweight": fit.ms_per_mweight,
        "samples": n,
        "mape_before": error_stats(sums, measured)["mape"],
        "mape_after": error_stats(after, measured)["mape"],
        "method": f"least squares on relative errors over {n} random genotypes (seed {seed}) of space {space.name},"
        f" eval nets at {shape}, {rounds} interleaved rounds, {threads} thread(s); Mweights = Mparams",
    }
    table.replace_calibration(cal)
    table.meta["calibration_detail"] = {
        "sum_ms": [round(v, 4) for v in sums],
        "mparams": [round(v, 4) for v in mparams],
        "measured_ms": [round(v, 4) for v in measured],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return cal
