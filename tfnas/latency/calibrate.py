"""Calibrate a LUT against end-to-end measurements of random architectures.

Summed op latencies differ from a whole network's: per-op graphs pay their own
input/output layout reorders and are timed with their weights hot in cache,
while a network streams every layer's weights through the caches on each
inference. We fit ``measured ~ scale * sum + ms_per_mweight * Mweights + offset``
by least squares and store it in the table, where ``predict`` applies it.

On ONNX Runtime CPU (2-core EPYC, 1 thread) the weight term took the
leave-one-out error over 180 random networks from 2.7% (affine in the sum) to
2.1%, near the noise of the measurements themselves; its fitted cost, 0.1-0.2 ms
per million fp32 weights (20-40 GB/s), is a plausible last-level-cache stream
(benchmarks/latency/README.md). Weights count at the width the runtime
allocates (``WidthGrid.runtime_width``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from profilers.lut import LatencyTable
from profilers.timing import TimingProtocol
from tfnas.errors import TfnasError
from tfnas.latency.measure import measure_drift_cancelled, protocol_for, reference_record, table_runtime
from tfnas.latency.predict import Calibration, predict
from tfnas.latency.table import Lookup, table_grid
from tfnas.mbv2.arch import Architecture, LayerChoice
from tfnas.mbv2.keys import arch_mweights
from tfnas.mbv2.space import MBV2Space

MeasureFn = Callable[[Architecture], float]


def fit_affine(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(scale, offset) of measured = scale * predicted + offset, least squares on relative errors.

    Relative (each residual divided by its measurement): the target is a percentage
    error, and a few large networks must not dominate the fit. The offset is a fixed
    whole-network overhead, so it must not be negative: a negative fit (noise, or a
    missing term) would make the fastest architectures absurdly fast when
    extrapolated. In that case, and for a degenerate sample, we fit a pure scale.
    """
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    r = p / m
    pure_scale = (float(np.sum(r) / np.sum(r * r)), 0.0)
    if len(p) < 2 or np.ptp(p) == 0:
        return pure_scale
    design = np.stack([r, 1.0 / m], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
    if scale <= 0 or offset < 0:
        return pure_scale
    return float(scale), float(offset)


def fit_calibration(predicted: Sequence[float], mweights: Sequence[float], measured: Sequence[float]) -> Calibration:
    """``Calibration`` with the weight-streaming term, least squares on relative errors.

    The streaming cost must not be negative (it would reward wider layers), nor the
    offset (see ``fit_affine``); when the full fit breaks either, or the sample is
    too small to separate the terms, the plain affine fit is used.
    """
    p, w, m = (np.asarray(v, float) for v in (predicted, mweights, measured))
    if len(p) >= 8 and np.ptp(w) > 0:
        design = np.stack([p / m, w / m, 1.0 / m], axis=1)
        (scale, k, offset), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
        if scale > 0 and k >= 0 and offset >= 0:
            return Calibration(float(scale), float(offset), float(k))
        if k >= 0:  # only the offset came out negative: refit without it
            (scale, k), *_ = np.linalg.lstsq(design[:, :2], np.ones_like(m), rcond=None)
            if scale > 0 and k >= 0:
                return Calibration(float(scale), 0.0, float(k))
    scale, offset = fit_affine(p, m)
    return Calibration(scale, offset, 0.0)


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE, worst and mean signed error (bias, %: positive = predictions too high)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m * 100.0
    return {"mape": float(np.mean(np.abs(rel))), "worst": float(np.max(np.abs(rel))), "bias": float(np.mean(rel))}


def sample_archs(
    space: MBV2Space, n: int, seed: int = 0, resolution: int | None = None, align: int = 1
) -> list[Architecture]:
    """Random architectures; with ``align > 1`` every width is rounded down to a multiple of it.

    A search derives widths on the table's alignment (the runtime's fast path), so a
    calibration meant for searched networks must be fit on that population.
    """
    rng = random.Random(seed)
    archs = [Architecture.random(space, rng, resolution) for _ in range(n)]
    if align > 1:
        for arch in archs:
            for g in space.layers(arch.resolution):
                c = arch.stages[g.stage][g.index]
                lo, _ = space.width_bounds(c.op, g.in_ch)
                arch.stages[g.stage][g.index] = LayerChoice(c.op, max(lo, c.width - c.width % align))
            arch.validate()
    return archs


CALIBRATION_SAMPLES, CALIBRATION_SEED, CALIBRATION_ROUNDS = 40, 0, 3  # the defaults of calibrate and its command


def calibrate(
    table: LatencyTable,
    space: MBV2Space,
    n: int = CALIBRATION_SAMPLES,
    seed: int = CALIBRATION_SEED,
    threads: int | None = None,
    backend: str | None = None,
    protocol: TimingProtocol | None = None,
    measure_fn: MeasureFn | None = None,
    progress: bool = True,
    rounds: int = CALIBRATION_ROUNDS,
    align: int | None = None,
) -> dict[str, Any]:
    """Measure ``n`` random architectures end to end, fit, store ``table.calibration`` and return it.

    Each architecture is measured in ``rounds`` interleaved rounds, drift-cancelled (``profilers.drift``:
    each timing between two of the reference network, converted with the reference's quiet time seen over
    the calibration, which the table records as its ``reference``). ``measure_fn(arch) -> ms`` replaces the real runtime (tests use a constructed one).
    """
    if n < 2:
        raise TfnasError(f"calibration needs at least 2 samples, got {n}")
    fp = table.fingerprint
    res, batch = int(fp["resolution"]), int(fp["batch"])
    rt = table_runtime(table, threads)  # int8 tables: every network is quantized as the table's graphs were
    threads = rt.threads
    backend = backend or rt.backend
    lookup = Lookup(table)
    align = table_grid(table).align if align is None else max(1, align)
    archs = sample_archs(space, n, seed, res, align)
    t0 = time.perf_counter()
    predicted = [predict(arch, lookup, calibrated=False) for arch in archs]
    mweights = [arch_mweights(arch, lookup.grid.runtime_width) for arch in archs]
    if measure_fn is None:
        protocol = protocol or protocol_for(table.protocol)  # the statistic the table's latencies are
        rt = dataclasses.replace(rt, backend=backend, threads=threads)
        # drift-cancelled, with the reference's quiet time seen over this calibration: recorded with the fit
        figs, seen = measure_drift_cancelled(archs, rt, rounds, protocol, None, seed=seed, progress=progress)
        measured = [f.value_ms for f in figs]
        if seen is not None:
            stat = protocol.statistic
            table.set_reference(reference_record(seen, rt, f"calibration ({n} networks x {rounds} rounds)", stat))
    else:
        measured = [measure_fn(arch) for arch in archs]
    fit = fit_calibration(predicted, mweights, measured)
    after = [fit.total(p, w) for p, w in zip(predicted, mweights)]
    before_stats, after_stats = error_stats(predicted, measured), error_stats(after, measured)
    cal = {
        "scale": fit.scale,
        "offset_ms": fit.offset_ms,
        "ms_per_mweight": fit.ms_per_mweight,
        "samples": n,
        "mape_before": before_stats["mape"],
        "mape_after": after_stats["mape"],
        "method": "least squares on relative errors, measured = scale*sum + ms_per_mweight*Mweights + offset;"
        f" {n} random archs"
        f" (seed {seed}, widths aligned to {align}), {rounds} interleaved rounds each, backend {backend}, {threads} thread(s), batch {batch},"
        f" {res}x{res}" + (" int8 (each network quantized as the table's graphs)" if rt.precision == "int8" else ""),
    }
    table.replace_calibration(cal)
    table.meta["calibration_detail"] = {
        "before": before_stats,
        "after": after_stats,
        "predicted_ms": [round(p, 4) for p in predicted],
        "mweights": [round(w, 4) for w in mweights],
        "measured_ms": [round(m, 4) for m in measured],
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return cal
