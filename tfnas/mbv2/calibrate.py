"""Calibrate an MBV2 latency table against end-to-end measurements of random architectures.

The fit itself knows no family (``tfnas.latency.calibrate``); here the networks it is fitted on are drawn
from the space (widths on the table's alignment, as a search derives them), predicted from the table and
timed here with the table's runtime, drift-cancelled.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable
from typing import Any

from profilers.drift import reference_timings, reference_typical
from profilers.lut import LatencyTable
from profilers.run import recent_profile_timings
from profilers.timing import TimingProtocol
from tfnas.errors import TfnasError
from tfnas.latency.calibrate import error_stats, fit_calibration
from tfnas.latency.measure import (
    Runtime,
    TimingSettings,
    measure_drift_cancelled,
    protocol_for,
    reference_record,
    table_runtime,
)
from tfnas.latency.table import Lookup, table_grid
from tfnas.mbv2.arch import Architecture, LayerChoice
from tfnas.mbv2.keys import arch_mweights
from tfnas.mbv2.measure import networks
from tfnas.mbv2.predict import predict
from tfnas.mbv2.space import MBV2Space

MeasureFn = Callable[[Architecture], float]


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
    the calibration, which the table records as its ``reference``). ``measure_fn(arch) -> ms`` replaces the
    real runtime (tests use a constructed one).
    """
    if n < 2:
        raise TfnasError(f"calibration needs at least 2 samples, got {n}")
    fp = table.fingerprint
    res, batch = int(fp["resolution"]), int(fp["batch"])
    rt = table_runtime(table, threads)  # int8 tables: every network is quantized as the table's graphs were
    rt = dataclasses.replace(rt, backend=backend or rt.backend)
    lookup = Lookup(table)
    align = table_grid(table).align if align is None else max(1, align)
    archs = sample_archs(space, n, seed, res, align)
    t0 = time.perf_counter()
    predicted = [predict(arch, lookup, calibrated=False) for arch in archs]
    mweights = [arch_mweights(arch, lookup.grid.runtime_width) for arch in archs]
    if measure_fn is None:
        timing = TimingSettings(rounds, seed, protocol or protocol_for(table.protocol), progress)
        measured = _measure(table, archs, rt, timing)
    else:
        measured = [measure_fn(arch) for arch in archs]
    method = (
        "least squares on relative errors, measured = scale*sum + ms_per_mweight*Mweights + offset;"
        f" {n} random archs (seed {seed}, widths aligned to {align}), {rounds} interleaved rounds each, backend"
        f" {rt.backend}, {rt.threads} thread(s), batch {batch}, {res}x{res}"
        + (" int8 (each network quantized as the table's graphs)" if rt.precision == "int8" else "")
    )
    return _store_fit(table, predicted, mweights, measured, method, time.perf_counter() - t0)


def _measure(table: LatencyTable, archs: list[Architecture], rt: Runtime, timing: TimingSettings) -> list[float]:
    """Drift-cancelled timings of ``archs``, converted with the reference's typical time over this calibration and
    the profile just before it (``recent_profile_timings``: minutes of the host, not this half minute); the
    table records that time with the fit."""
    figs, seen = measure_drift_cancelled(networks(archs), rt, timing)
    if seen is None:
        return [f.value_ms for f in figs]
    own, prior = reference_timings(figs), recent_profile_timings(table)
    ref_ms = reference_typical(own + prior)
    how = f"calibration ({len(archs)} networks x {timing.rounds} rounds)"
    how += f" and the {len(prior)} reference timings of its profile" if prior else ""
    table.set_reference(reference_record(ref_ms, rt, how, timing.protocol.statistic, len(own) + len(prior)))
    return [f.ratio * ref_ms for f in figs]


def _store_fit(
    table: LatencyTable, predicted: list[float], mweights: list[float], measured: list[float], method: str,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """Fit, store it in ``table`` (the fit it replaces goes to history) with its detail, and return it."""
    fit = fit_calibration(predicted, mweights, measured)
    after = [fit.total(p, w) for p, w in zip(predicted, mweights)]
    before_stats, after_stats = error_stats(predicted, measured), error_stats(after, measured)
    cal = {
        "scale": fit.scale,
        "offset_ms": fit.offset_ms,
        "ms_per_mweight": fit.ms_per_mweight,
        "samples": len(predicted),
        "mape_before": before_stats["mape"],
        "mape_after": after_stats["mape"],
        "method": method,
    }
    table.replace_calibration(cal)
    table.meta["calibration_detail"] = {
        "before": before_stats,
        "after": after_stats,
        "predicted_ms": [round(p, 4) for p in predicted],
        "mweights": [round(w, 4) for w in mweights],
        "measured_ms": [round(m, 4) for m in measured],
        "seconds": round(seconds, 1),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return cal
