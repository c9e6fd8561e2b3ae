"""The drift-cancelled method (profilers.drift) on fake timers: injected drift, spells and noise, no host speed.

Every test here would fail if a +30% spell were believed (the raw figure), and none fails on the host's
ordinary noise (a few %)."""

from __future__ import annotations

import math
import random
import types

import pytest

from profilers.drift import (
    DriftSettings,
    Round,
    figure_of,
    measure_referenced,
    median_half_width,
    pool,
    reference_baseline,
)
from profilers.errors import ProfilerError
from profilers.timing import TimingProtocol

PROTOCOL = TimingProtocol(statistic="p10")
QUIET_NET, QUIET_REF = 5.0, 0.5


class Host:
    """A fake host: each timing is one step; ``speed(step)`` is how much slower than quiet the host runs."""

    def __init__(self, speed=lambda step: 1.0, noise: float = 0.0, seed: int = 0):
        self.step, self.speed, self.noise = 0, speed, noise
        self.rng = random.Random(seed)

    def timer(self, quiet_ms: float):
        def run(protocol):
            factor = self.speed(self.step) * (1.0 + self.rng.uniform(-self.noise, self.noise))
            self.step += 1
            return types.SimpleNamespace(latency_ms=quiet_ms * factor)

        return run


def _measure(host: Host, rounds: int = 6, nets=(QUIET_NET,), settings=None, reference_ms=QUIET_REF):
    timers = [host.timer(ms) for ms in nets]
    return measure_referenced(timers, host.timer(QUIET_REF), PROTOCOL, rounds, reference_ms, "table", 0, settings)


def test_a_slower_host_cancels():
    """The host runs 20% slower throughout (drift since the table): the raw figure is +20%, the cancelled one quiet."""
    figs, seen = _measure(Host(lambda s: 1.2, noise=0.01))
    f = figs[0]
    assert f.raw_ms == pytest.approx(1.2 * QUIET_NET, rel=0.02)
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.02) and f.clean
    assert seen == pytest.approx(1.2 * QUIET_REF, rel=0.02)


def test_a_spell_over_the_whole_measurement_cancels():
    """A +35% spell spanning every timing (what a low quantile over rounds cannot reject) cancels."""
    f = _measure(Host(lambda s: 1.35, noise=0.02))[0][0]
    assert f.raw_ms > 1.3 * QUIET_NET
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.03)


def test_a_reference_recorded_in_a_spell_is_replaced_by_the_quiet_one_seen_now():
    """The table's reference time was taken during a +11% spell (a quick validation inside one); the host is quiet
    now: believing the record would put every figure 11% high, so the lower reference seen now converts."""
    f = _measure(Host(noise=0.01), reference_ms=1.11 * QUIET_REF)[0][0]
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.02)
    assert f.reference_source.startswith("this measurement")
    # within the host's noise the recorded time stands (a slower host now is cancelled by it, above)
    g = _measure(Host(noise=0.01), reference_ms=1.02 * QUIET_REF)[0][0]
    assert g.reference_ms == 1.02 * QUIET_REF and g.reference_source == "table"


def test_a_spell_edge_inside_a_round_is_detected_and_the_round_repeated():
    """A +30% spell that starts right after a reference timing and ends mid-measurement: the rounds it cuts
    have disagreeing references, are judged unsteady and repeated; the figure stays quiet."""
    # timings: R0 C1 R2 C3 R4 C5 R6 ...; the spell covers C3..C7 (starting after R2): round 2 (R2 C3 R4) is cut
    host = Host(lambda s: 1.3 if 3 <= s <= 7 else 1.0)
    f = _measure(host, rounds=6)[0][0]
    unsteady = [r for r in f.rounds if not r.steady]
    assert unsteady, "the rounds a spell cut were not detected"
    assert len(f.rounds) == 6 + len(unsteady)  # each repeated once
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.01)
    assert f.clean


def test_a_network_only_burst_in_one_round_does_not_move_the_median():
    """Load that hits one timing of the network but not the reference is one odd ratio; the median ignores it."""
    speeds = {3: 1.4}  # C3 only
    f = _measure(Host(lambda s: speeds.get(s, 1.0)), rounds=5)[0][0]
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_ordinary_noise_is_never_taken_for_a_spell(seed):
    """+/-3% per timing (the host's ordinary noise): no round is repeated, and the figure is within 3%."""
    figs, _ = _measure(Host(noise=0.03, seed=seed), rounds=6, nets=(5.0, 2.0, 8.0))
    for f, quiet in zip(figs, (5.0, 2.0, 8.0)):
        assert len(f.rounds) == 6 and all(r.steady for r in f.rounds)
        assert f.cancelled_ms == pytest.approx(quiet, rel=0.03)
        assert f.uncertainty_ms is not None and f.uncertainty_ms < 0.05 * quiet


def _spell_timer(host: Host, quiet_ms: float, slow: float, in_spell):
    """A timer on ``host`` that runs ``slow`` times slower while ``in_spell(step)``: a spell that slows the reference
    and a network by different factors (measured on int8: 1.34x and 1.27x, 1.17x and 1.05x)."""
    run_quiet = host.timer(quiet_ms)

    def run(protocol):
        spell = in_spell(host.step)
        return types.SimpleNamespace(latency_ms=run_quiet(protocol).latency_ms * (slow if spell else 1.0))

    return run


def _spell_measure(in_spell, net_slow: float, ref_slow: float, rounds: int):
    host = Host(noise=0.01)
    timers = [_spell_timer(host, QUIET_NET, net_slow, in_spell)]
    figs, _ = measure_referenced(timers, _spell_timer(host, QUIET_REF, ref_slow, in_spell), PROTOCOL, rounds, QUIET_REF)
    return figs[0]


def test_a_measurement_mostly_inside_a_spell_keeps_its_quiet_rounds():
    """The host spends the first 60% of the planned rounds in a spell that slows the reference 1.17x and the
    network 1.35x: the spell rounds are the majority, so judging against their median would throw the quiet
    rounds away (no figure, or a spell figure). Judged against the reference's quiet level the quiet rounds
    stand, the spell rounds are repeated, and the figure is quiet."""
    f = _spell_measure(lambda step: step <= 12, 1.35, 1.17, rounds=10)  # timings R C R C ...: 2 per round
    assert f.clean, f.describe()
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.03)
    assert f.raw_ms > 1.1 * QUIET_NET  # what a plain timing of the planned rounds says


def test_a_few_quiet_rounds_beat_many_spell_rounds():
    """Four quiet rounds between two spells that slow the reference 1.34x and the network 1.27x (a `tfnas
    measure` of an int8 network, measured: its spell rounds gave 7.91 ms, its quiet rounds 8.37, fresh runs
    8.3-8.5): the figure comes from the quiet rounds, not from the spell's ratio (5% low)."""
    f = _spell_measure(lambda step: step < 10 or step > 18, 1.27, 1.34, rounds=9)
    assert f.clean, f.describe()
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.02)
    assert f.slow_state is None


def test_a_spell_that_outlasts_the_measurement_is_cancelled_and_named():
    """Two quiet rounds, then a spell to the end that slows the reference 1.30x and the network 1.27x (as
    measured in an int8 demo's closing figure): too few quiet rounds, so the rounds of the measurement's usual
    (slow) state give the figure; their ratio cancels what the spell shares, and the figure says where it came
    from instead of refusing a number the ratio gets right."""
    f = _spell_measure(lambda step: step > 2 * 2, 1.27, 1.30, rounds=10)
    assert f.clean, f.describe()
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.04)
    assert f.raw_ms > 1.2 * QUIET_NET
    assert f.slow_state == pytest.approx(1.30, rel=0.03) and "slow state" in f.describe()


def test_a_host_that_never_settles_gives_no_figure():
    """A host whose speed flips by 40% between consecutive reference timings (R C R C R: every second R is slow):
    every round's references disagree; after the bounded repeats the measurement says it is not clean
    instead of giving a number."""
    host = Host(lambda s: 1.4 if s % 4 == 2 else 1.0)
    host_timer_ref = host.timer(QUIET_REF)
    figs, _ = measure_referenced([host.timer(QUIET_NET)], host_timer_ref, PROTOCOL, 4, QUIET_REF, "table")
    f = figs[0]
    assert not f.clean
    assert len(f.rounds) == 8  # 4 planned + at most 4 repeats: bounded
    assert "no clean figure" in f.describe()
    assert f.uncertainty_ms is None


def test_without_a_recorded_reference_the_typical_time_seen_converts():
    """No table reference: the figure converts with the median of the reference's timings in this measurement,
    so a spell over a third of the rounds does not raise it."""
    host = Host(lambda s: 1.35 if s < 8 else 1.0, noise=0.01)
    figs, seen = _measure(host, rounds=12, reference_ms=None)
    f = figs[0]
    assert f.reference_source == "this measurement"
    assert seen == pytest.approx(QUIET_REF, rel=0.02)
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.03)


def test_a_host_with_fast_moments_records_its_typical_speed_not_its_fastest():
    """A host whose speed moves both ways (measured on an Intel AMX host: 10-s windows +/-10%, a quarter of the
    timings 15% fast): the reference time recorded from a measurement is the typical one, so figures converted
    with it read what the network takes typically. A low quantile recorded the fast moments: 15% low."""
    host = Host(lambda s: 0.85 if (s // 6) % 4 == 0 else 1.0, noise=0.01)
    figs, seen = _measure(host, rounds=24, reference_ms=None)
    assert seen == pytest.approx(QUIET_REF, rel=0.02)  # a 20% quantile: 0.85 x
    assert figs[0].cancelled_ms == pytest.approx(QUIET_NET, rel=0.03) == figs[0].raw_ms


def test_a_fast_window_keeps_the_recorded_reference():
    """A measurement inside one of the host's fast windows (7% fast throughout) is no sign that the recorded time
    was a spell: the recorded time stands and the figure reads the network's typical time, not 7% below it."""
    f = _measure(Host(lambda s: 0.93, noise=0.01))[0][0]
    assert f.reference_source == "table" and f.reference_ms == QUIET_REF
    assert f.cancelled_ms == pytest.approx(QUIET_NET, rel=0.02)


def test_interleaving_visits_every_network_between_two_references():
    host = Host()
    calls = []

    def tag(name, ms):
        t = host.timer(ms)
        return lambda p: (calls.append(name), t(p))[1]

    measure_referenced([tag("a", 1.0), tag("b", 2.0)], tag("R", 0.5), PROTOCOL, 3, 0.5)
    assert calls[0] == "R" and calls[-1] == "R"
    assert all(calls[i] == "R" for i in range(0, len(calls), 2))  # R x R y R ...
    assert sorted(c for c in calls if c != "R") == ["a"] * 3 + ["b"] * 3


def test_helpers():
    assert reference_baseline([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == pytest.approx(2.0)
    assert math.isinf(median_half_width([1.0]))
    assert median_half_width([1.0, 1.0, 1.0]) == 0.0
    rounds = [Round(1.0, 2.0, 1.0, True), Round(1.0, 9.0, 1.0, False)]
    assert figure_of(rounds, 0.5) == pytest.approx(1.0)
    with pytest.raises(ProfilerError, match="tolerance"):
        DriftSettings(tolerance=0)
    with pytest.raises(ProfilerError, match="rounds"):
        measure_referenced([], Host().timer(1.0), PROTOCOL, 0)


def test_pooled_measurements_state_what_separates_them_not_only_their_own_rounds():
    """Measurements of one network in separate processes: the pooled figure is their mean, and its +/- covers
    the spread between them (the rounds of one measurement share a state the next one does not)."""
    quiet = [_measure(Host(noise=0.01, seed=s))[0][0] for s in range(2)]
    apart = [quiet[0], _measure(Host(lambda step: 1.0, noise=0.01, seed=2), nets=(1.06 * QUIET_NET,))[0][0]]
    one, both = apart[0], pool(apart)
    assert both.value_ms == pytest.approx((apart[0].value_ms + apart[1].value_ms) / 2)
    assert one.uncertainty_ms < 0.02 * QUIET_NET  # each measurement alone is sure of itself ...
    assert both.uncertainty_ms >= abs(apart[1].value_ms - apart[0].value_ms) / 2  # ... the pool is not
    assert pool(quiet).uncertainty_ms < max(f.uncertainty_ms for f in quiet)  # agreeing measurements: narrower
    assert both.measurements == [f.value_ms for f in apart] and "2 measurements" in both.describe()
    assert both.method.startswith("pooled: mean of 2")


def test_unclean_measurements_are_left_out_of_a_pool():
    bad = _measure(Host(lambda s: 1.4 if s % 4 == 2 else 1.0), rounds=4)[0][0]  # never settles: no clean figure
    good = _measure(Host(noise=0.01))[0][0]
    assert not bad.clean and good.clean
    assert pool([bad, good]) is good and pool([good]) is good
    assert not pool([bad, bad]).clean
    with pytest.raises(ProfilerError, match="no measurements"):
        pool([])
