"""Timing protocol: how one graph is timed, independent of any runtime.

``measure`` only sees a zero-argument callable and a clock, so the statistics
(warm-up, stopping rule, outlier rejection, noise flagging, re-measuring) are
tested on a fake clock, deterministically and instantly.

Stopping rule: after ``min_repeats`` samples, stop as soon as the 95% confidence
interval of the median (distribution-free, from order statistics) has a relative
half-width of at most ``target_rel_ci``; otherwise stop at ``max_repeats`` or when
the attempt has used ``max_time_s`` (but never with fewer than ``floor_repeats``).
Warm-up runs use at most half of ``max_time_s`` (at least one run). Samples beyond
``Q3 + k*IQR`` (or below ``Q1 - k*IQR``) are dropped as outliers (preemption, page faults). A result whose coefficient of variation stays above
``noisy_cv`` is re-measured up to ``remeasure_attempts`` times; if it is still
noisy, the least noisy attempt is kept and flagged ``noisy=True``.

The reported latency is a *low quantile* of the kept samples (``statistic``, by
default the 10th percentile): interference on a shared host only ever adds time,
so a low quantile repeats between passes where the median does not (the same
networks, two passes minutes apart: median of rounds 5.8-19.7% pass-to-pass
MAPE, 10th percentile 3.2%, on a 2-core VM). Unlike the minimum it does not fall
as more samples are taken, so tables built with a few samples per op and
validations with many agree. The median and spread are kept beside it for users
whose deployment target is itself shared.

``passes`` is not used here but by the runner (``profilers.run``): it times the
whole bundle ``passes`` times and keeps the median of the pass medians, because on
a shared machine slow-downs come in bursts of seconds that shift every sample of
one measurement alike (a low cv does not reveal them); separate passes do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from profilers.errors import ProfilerError

Clock = Callable[[], float]

_Z95 = 1.959964


@dataclass(frozen=True)
class TimingProtocol:
    """Settings of the timing protocol; stored verbatim in every LUT."""

    warmup: int = 5
    min_repeats: int = 15
    max_repeats: int = 300
    target_rel_ci: float = 0.01
    max_time_s: float = 1.0
    floor_repeats: int = 5
    outlier_iqr_factor: float = 3.0
    noisy_cv: float = 0.10
    remeasure_attempts: int = 2
    check_every: int = 5
    passes: int = 3  # used by the runner: whole-bundle passes, latency = median of the passes' values
    statistic: str = "p10"  # what a latency is: see STATISTICS

    def __post_init__(self) -> None:
        checks = [
            ("warmup", self.warmup >= 0, "an integer >= 0"),
            ("min_repeats", self.min_repeats >= 1, "an integer >= 1"),
            ("max_repeats", self.max_repeats >= self.min_repeats, "an integer >= min_repeats"),
            ("floor_repeats", 1 <= self.floor_repeats <= self.min_repeats, "between 1 and min_repeats"),
            ("target_rel_ci", self.target_rel_ci > 0, "a number > 0"),
            ("max_time_s", self.max_time_s > 0, "a number > 0"),
            ("outlier_iqr_factor", self.outlier_iqr_factor > 0, "a number > 0"),
            ("noisy_cv", self.noisy_cv > 0, "a number > 0"),
            ("remeasure_attempts", self.remeasure_attempts >= 0, "an integer >= 0"),
            ("check_every", self.check_every >= 1, "an integer >= 1"),
            ("passes", self.passes >= 1, "an integer >= 1"),
            ("statistic", self.statistic in STATISTICS, f"one of {sorted(STATISTICS)}"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ProfilerError(f"timing protocol: {name}={getattr(self, name)!r}, expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the LUT's ``protocol`` field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingProtocol:
        """Inverse of ``to_dict``; unknown keys are an error (they would be silently ignored).

        A protocol recorded before ``statistic`` existed measured medians: it reads as ``median``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfilerError(f"timing protocol: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{"statistic": "median", **data})


# How a latency table is profiled by default (``tfnas profile``, ``python -m profilers run``). A low quantile
# needs no convergence of the median's CI: a fixed 12 samples per graph and pass, two whole-bundle passes
# (a burst of load hits one pass of a point), no re-measuring. The 1203-graph ImageNet table then takes
# about two minutes on a 2-core VM (benchmarks/latency/README.md) instead of 5-22.
PROFILE_PROTOCOL_SETTINGS: dict[str, Any] = {
    "warmup": 2,
    "min_repeats": 12,
    "max_repeats": 12,
    "floor_repeats": 5,
    "max_time_s": 0.06,
    "remeasure_attempts": 0,
    "passes": 2,
    "statistic": "p10",
}


def table_statistic(protocol: dict[str, Any]) -> str:
    """The statistic a table's latencies are (tables written before the field existed hold medians)."""
    stat = protocol.get("statistic", "median")
    return stat if stat in STATISTICS else "median"


# What "the latency" of a set of samples is. Quantiles use linear interpolation (numpy's default).
STATISTICS: dict[str, float] = {"median": 50.0, "p25": 25.0, "p20": 20.0, "p10": 10.0, "p5": 5.0}


@dataclass(frozen=True)
class Measurement:
    """Result of timing one graph; times in milliseconds."""

    median_ms: float
    spread_ms: float  # interquartile range of the kept samples
    cv: float  # coefficient of variation (std / mean) of the kept samples
    repeats: int  # samples taken in the reported attempt
    noisy: bool
    samples_kept: int  # samples left after outlier rejection
    rel_ci: float = math.nan  # relative half-width of the 95% CI of the median
    attempts: int = 1
    elapsed_s: float = 0.0  # clock time of all attempts, warm-up included
    value_ms: float = math.nan  # the protocol's statistic of the kept samples (what a LUT stores)
    statistic: str = "median"

    @property
    def latency_ms(self) -> float:
        """The latency this measurement stands for: its statistic (the median for old records)."""
        return self.median_ms if math.isnan(self.value_ms) else self.value_ms


def reject_outliers(samples: np.ndarray, factor: float) -> np.ndarray:
    """Drop samples outside [Q1 - factor*IQR, Q3 + factor*IQR]."""
    q1, q3 = np.percentile(samples, [25.0, 75.0])
    iqr = q3 - q1
    keep = (samples >= q1 - factor * iqr) & (samples <= q3 + factor * iqr)
    return samples[keep]


def median_rel_ci(sorted_samples: np.ndarray) -> float:
    """Relative half-width of the 95% CI of the median from order statistics (inf if too few)."""
    n = len(sorted_samples)
    half = _Z95 * math.sqrt(n) / 2.0
    lo = int(math.floor(n / 2.0 - half))
    hi = int(math.ceil(n / 2.0 + half)) - 1
    if lo < 0 or hi >= n:
        return math.inf
    mid = n // 2
    med = float(sorted_samples[mid] if n % 2 else (sorted_samples[mid - 1] + sorted_samples[mid]) / 2.0)
    if med <= 0:
        return math.inf
    return float(sorted_samples[hi] - sorted_samples[lo]) / 2.0 / med


def summarize(samples_ms: list[float], protocol: TimingProtocol) -> tuple[float, float, float, int, float, float]:
    """(median, IQR, cv, kept, rel_ci, statistic) of samples after outlier rejection."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    kept = np.sort(reject_outliers(arr, protocol.outlier_iqr_factor))
    if len(kept) == 0:  # cannot happen with factor > 0, but never divide by zero
        kept = np.sort(arr)
    q1, med, q3, value = np.percentile(kept, [25.0, 50.0, 75.0, STATISTICS[protocol.statistic]])
    mean = float(np.mean(kept))
    cv = float(np.std(kept, ddof=1) / mean) if len(kept) > 1 and mean > 0 else 0.0
    return float(med), float(q3 - q1), cv, len(kept), median_rel_ci(kept), float(value)


def _converged(samples_ms: list[float], protocol: TimingProtocol) -> bool:
    """The stopping rule alone (no full summary: it runs every ``check_every`` samples of tiny ops)."""
    kept = np.sort(reject_outliers(np.asarray(samples_ms, dtype=np.float64), protocol.outlier_iqr_factor))
    return median_rel_ci(kept) <= protocol.target_rel_ci


def _measure_once(
    fn: Callable[[], None], protocol: TimingProtocol, clock: Clock, sample_ms: Callable[[], float] | None
) -> Measurement:
    start = clock()
    for _ in range(protocol.warmup):
        fn()
        if clock() - start >= protocol.max_time_s / 2:  # slow graph: warm-up may use half the cap
            break
    samples: list[float] = []
    while len(samples) < protocol.max_repeats:
        if sample_ms is None:
            t0 = clock()
            fn()
            samples.append((clock() - t0) * 1000.0)
        else:
            samples.append(sample_ms())
        n = len(samples)
        if clock() - start >= protocol.max_time_s and n >= protocol.floor_repeats:
            break
        if n >= protocol.min_repeats and n % protocol.check_every == 0 and _converged(samples, protocol):
            break
    med, spread, cv, kept, rel_ci, value = summarize(samples, protocol)
    return Measurement(
        value_ms=value,
        statistic=protocol.statistic,
        median_ms=med,
        spread_ms=spread,
        cv=cv,
        repeats=len(samples),
        noisy=cv > protocol.noisy_cv,
        samples_kept=kept,
        rel_ci=rel_ci,
        elapsed_s=clock() - start,
    )


def measure(
    fn: Callable[[], None],
    protocol: TimingProtocol | None = None,
    clock: Clock = time.perf_counter,
    sample_ms: Callable[[], float] | None = None,
) -> Measurement:
    """Time ``fn`` per ``protocol``; re-measure while noisy; the result says if it stayed noisy.

    ``sample_ms``: takes one timed sample itself (e.g. with device events for an
    asynchronous runtime); ``fn`` then only warms up, and ``clock`` only caps the time.
    """
    protocol = protocol or TimingProtocol()
    best: Measurement | None = None
    total = 0.0
    attempts = 0
    while attempts <= protocol.remeasure_attempts:
        attempts += 1
        m = _measure_once(fn, protocol, clock, sample_ms)
        total += m.elapsed_s
        if best is None or m.cv < best.cv:
            best = m
        if not m.noisy:
            best = m
            break
    assert best is not None
    return Measurement(**{**asdict(best), "attempts": attempts, "elapsed_s": total})


PROFILE_PROTOCOL = TimingProtocol(**PROFILE_PROTOCOL_SETTINGS)
