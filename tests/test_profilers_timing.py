"""Timing protocol on a fake clock: deterministic and instant."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import pytest

from profilers.errors import ProfilerError
from profilers.timing import Measurement, TimingProtocol, measure, median_rel_ci, reject_outliers


class FakeRunner:
    """A fake clock plus a callable that advances it by scripted durations (seconds)."""

    def __init__(self, durations_ms: Iterable[float]) -> None:
        self.now = 0.0
        self.calls = 0
        self._it = iter(durations_ms)

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.calls += 1
        self.now += next(self._it) / 1000.0


def proto(**kw: object) -> TimingProtocol:
    base: dict[str, object] = dict(
        warmup=2, min_repeats=10, max_repeats=100, target_rel_ci=0.01, max_time_s=100.0, floor_repeats=3
    )
    base.update(kw)
    return TimingProtocol(**base)  # type: ignore[arg-type]


def test_stops_when_stable() -> None:
    run = FakeRunner(itertools.repeat(2.0))
    m = measure(run, proto(), clock=run.clock)
    assert isinstance(m, Measurement)
    assert m.median_ms == pytest.approx(2.0)
    assert m.repeats == 10  # stable at the first check after min_repeats
    assert run.calls == 2 + 10  # warm-up + samples, nothing more
    assert not m.noisy and m.cv == pytest.approx(0.0) and m.attempts == 1


def test_warmup_samples_are_not_recorded() -> None:
    run = FakeRunner(itertools.chain([500.0, 400.0], itertools.repeat(1.0)))
    m = measure(run, proto(), clock=run.clock)
    assert m.median_ms == pytest.approx(1.0)
    assert m.samples_kept == m.repeats


def test_outliers_rejected() -> None:
    # alternating 1.0/1.02 ms with a rare 50 ms spike (preemption)
    pattern = [1.0, 1.02] * 9 + [50.0]
    run = FakeRunner(itertools.cycle(pattern))
    m = measure(run, proto(min_repeats=19, max_repeats=19), clock=run.clock)
    assert m.repeats == 19
    assert m.samples_kept == 18
    assert m.median_ms == pytest.approx(1.01, abs=0.011)
    assert m.cv < 0.02 and not m.noisy


def test_reject_outliers_rule() -> None:
    import numpy as np

    x = np.array([1.0, 1.1, 1.2, 1.3, 10.0])
    kept = reject_outliers(x, 3.0)  # Q1=1.1, Q3=1.3, IQR=0.2: upper fence 1.9
    assert list(kept) == [1.0, 1.1, 1.2, 1.3]


def test_noisy_is_flagged_after_remeasure_attempts() -> None:
    # samples alternate 1 ms / 3 ms: cv ~ 0.5, no outliers to remove, never stable
    run = FakeRunner(itertools.cycle([1.0, 3.0]))
    p = proto(max_repeats=20, noisy_cv=0.1, remeasure_attempts=2)
    m = measure(run, p, clock=run.clock)
    assert m.noisy
    assert m.attempts == 3
    assert m.cv > 0.1
    assert run.calls == 3 * (2 + 20)


def test_noisy_then_quiet_keeps_the_quiet_attempt() -> None:
    noisy = [1.0, 3.0] * 11  # first attempt: warm-up 2 + 20 samples
    quiet = itertools.repeat(2.0)
    run = FakeRunner(itertools.chain(noisy, quiet))
    m = measure(run, proto(max_repeats=20, remeasure_attempts=2), clock=run.clock)
    assert not m.noisy
    assert m.attempts == 2
    assert m.median_ms == pytest.approx(2.0)


def test_respects_time_cap() -> None:
    # 100 ms per call, cap 1 s: warm-up 0.2 s, then samples until 1 s elapsed (8 samples)
    run = FakeRunner(itertools.cycle([100.0, 104.0]))
    p = proto(max_time_s=1.0, min_repeats=20, max_repeats=1000, floor_repeats=3, remeasure_attempts=0)
    m = measure(run, p, clock=run.clock)
    assert m.repeats < 20
    assert m.elapsed_s <= 1.0 + 0.105  # at most one call beyond the cap
    assert m.repeats >= 3


def test_time_cap_never_below_floor_repeats() -> None:
    run = FakeRunner(itertools.repeat(5000.0))  # 5 s per call, cap 1 s
    p = proto(max_time_s=1.0, warmup=0, floor_repeats=3, remeasure_attempts=0)
    m = measure(run, p, clock=run.clock)
    assert m.repeats == 3


def test_warmup_is_capped_for_slow_graphs() -> None:
    run = FakeRunner(itertools.repeat(400.0))  # 0.4 s per call, cap 1 s: warm-up stops after 2 runs
    p = proto(warmup=10, max_time_s=1.0, floor_repeats=3, remeasure_attempts=0)
    m = measure(run, p, clock=run.clock)
    assert run.calls == 2 + 3
    assert m.repeats == 3


def test_median_ci_needs_enough_samples() -> None:
    import numpy as np

    assert math.isinf(median_rel_ci(np.array([1.0, 2.0])))
    assert median_rel_ci(np.full(50, 3.0)) == 0.0


@pytest.mark.parametrize(
    "kw", [{"min_repeats": 0}, {"max_repeats": 1, "min_repeats": 5}, {"max_time_s": 0}, {"noisy_cv": -1}]
)
def test_protocol_validation(kw: dict[str, object]) -> None:
    with pytest.raises(ProfilerError, match="timing protocol"):
        TimingProtocol(**kw)  # type: ignore[arg-type]


def test_protocol_round_trip() -> None:
    p = proto()
    assert TimingProtocol.from_dict(p.to_dict()) == p
    with pytest.raises(ProfilerError, match="unknown"):
        TimingProtocol.from_dict({**p.to_dict(), "bogus": 1})


def test_an_external_sampler_replaces_the_clock_and_fn_only_warms_up():
    """Asynchronous runtimes (CUDA events) time their own samples through ``sample_ms``."""
    calls = {"fn": 0, "sample": 0}

    def fn():
        calls["fn"] += 1

    def sample_ms():
        calls["sample"] += 1
        return 2.5

    p = TimingProtocol(warmup=3, min_repeats=5, max_repeats=50, check_every=5, max_time_s=10.0)
    m = measure(fn, p, sample_ms=sample_ms)
    assert m.median_ms == 2.5 and m.repeats == calls["sample"] == 5 and calls["fn"] == 3 and not m.noisy
