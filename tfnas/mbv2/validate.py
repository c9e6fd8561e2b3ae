"""Validate an MBV2 latency table here: search-like networks predicted and timed, beside the host's own noise.

The verdict and its figures know no family (``tfnas.latency.validate``); here the networks are drawn from
the space (widths on the table's alignment, as a search derives them), predicted from the table and timed
with the table's runtime in interleaved rounds split into two passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from profilers.lut import LatencyTable
from profilers.timing import Measurement
from tfnas.latency.measure import TimingSettings, measure_table_drift_cancelled, protocol_for, round_latency
from tfnas.latency.table import Lookup, device_match, table_device, table_grid, table_precision
from tfnas.latency.validate import Validation, error_report, fill_drift_cancelled, judge
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.calibrate import sample_archs
from tfnas.mbv2.measure import networks
from tfnas.mbv2.predict import predict
from tfnas.mbv2.space import MBV2Space

RoundsFn = Callable[[Sequence[Architecture], int], list[list[Measurement]]]


VALIDATION_SAMPLES, VALIDATION_ROUNDS, VALIDATION_SEED = 12, 6, 1  # the defaults of validate_table and its command


def validate_table(
    table: LatencyTable,
    space: MBV2Space,
    n: int = VALIDATION_SAMPLES,
    rounds: int = VALIDATION_ROUNDS,
    seed: int = VALIDATION_SEED,
    threads: int | None = None,
    allow_foreign: bool = False,
    rounds_fn: RoundsFn | None = None,
    progress: bool = False,
    use_table_reference: bool = True,
) -> Validation:
    """Compare ``table`` with ``n`` networks timed here in ``rounds`` interleaved rounds (split in two passes).

    ``rounds_fn(archs, rounds)`` replaces the runtime (tests); by default the networks are timed with the
    table's backend, threads, batch, precision (int8: each network quantized as the table's graphs
    were) and statistic, drift-cancelled (``profilers.drift``): converted with the reference time the
    table recorded on this device, or (none recorded, or ``use_table_reference=False``) with the
    reference's quiet time seen in this validation. The raw figures are reported beside them.
    """
    fp = table.fingerprint
    match = device_match(table, threads)
    result = Validation(str(table.source), table_device(table), match.same_device, match.describe())
    if match.verifiable and match.identity and not allow_foreign:
        result.verdict = "foreign"
        result.reason = "the table was measured on another device; nothing was timed (--allow-foreign-table times it)"
        return result
    rounds = max(2, rounds - rounds % 2)
    res = int(fp["resolution"])
    threads = threads or int(fp["threads"])
    protocol = protocol_for(table.protocol)
    lookup = Lookup(table)
    archs = sample_archs(space, n, seed, res, table_grid(table).align)
    t0 = time.perf_counter()
    result.predicted_ms = [predict(a, lookup) for a in archs]
    result.precision = table_precision(table)
    half = rounds // 2
    if rounds_fn is not None:  # tests: plain rounds, no reference
        runs = rounds_fn(archs, rounds)
        result.measured_ms = [round_latency(r) for r in runs]
        result.pass_a_ms = [round_latency(r[:half]) for r in runs]
        result.pass_b_ms = [round_latency(r[half:]) for r in runs]
        result.statistic = f"median over rounds of each round's {protocol.statistic}"
    else:  # the table's runtime and precision (int8: networks quantized first), drift-cancelled
        timing = TimingSettings(rounds, seed, protocol, progress)
        figs, seen = measure_table_drift_cancelled(networks(archs), table, timing, threads, use_table_reference)
        fill_drift_cancelled(result, figs, seen, half)
    result.networks, result.rounds = len(archs), rounds
    result.table = error_report(result.predicted_ms, result.measured_ms)
    result.noise_floor = error_report(result.pass_a_ms, result.pass_b_ms)
    result.seconds = round(time.perf_counter() - t0, 1)
    result.verdict, result.reason = judge(result.table, result.noise_floor)
    return result
