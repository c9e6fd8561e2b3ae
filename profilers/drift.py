"""Drift-cancelled timing: candidates timed between two timings of the reference network.

Each round visits the candidates in a new shuffled order, and the reference is timed before the first
and after every candidate, so every candidate sits between two reference timings (R C1 R C2 R ...).
A candidate's round gives the ratio ``C / mean(R_before, R_after)``; a slow spell or a busy neighbour
that spans the three timings slows them alike and the ratio does not move. The drift-cancelled figure
is the median ratio over rounds times the reference's typical time on this device (``reference_ms``,
recorded with the table: the median of its timings, ``reference_typical``); the raw figure (median over
rounds of the candidate's time) is kept beside it. Median, ratio median and raw median are one statistic, so a
figure converts to what the raw figure would read at the recorded speed. A low quantile recorded instead
picks the host's fast moments: on an Intel AMX host whose speed moves +/-10% between 10-s windows, a
calibration recorded the reference's 20% quantile of its 29 s, 0.325 ms, while its typical time over minutes
was 0.366 ms, and every figure converted with it read 11% low (the searched net, "5.01 ms", timed 5.70 ms raw
in fresh processes).

Spells are detected, not believed: a round is *unsteady* when its two reference timings disagree by
more than ``tolerance`` (a spell began or ended inside it) or their mean departs from the reference's quiet
level in this measurement (a low quantile of the rounds' references, ``BASELINE_QUANTILE``) by more than
``tolerance``. The quiet level first: interference only adds time, and a spell does not always slow the
reference and the candidate alike (measured, an int8 reference alternating 0.326 <-> 0.38 ms: the reference
1.17x, the network 1.05x; judged against the median, 0 of 14 rounds were steady), so a few quiet rounds
(``MIN_CLEAN``) make a figure. A candidate left with fewer after the repeats is judged against the median
reference instead: a spell spanning nearly all of the measurement, in which the ratio cancels what the spell
shares (measured: reference 1.30x, network 1.27x), and the figure says it came from a slow state. Unsteady rounds are repeated, at most ``extra_rounds``
times per candidate; a candidate that ends with fewer than ``min_clean`` steady rounds is reported as
not clean (``clean=False``) and callers say so instead of printing a number.

The uncertainty is the 95% half-width of the median ratio (robust spread: 1.4826 x MAD, the median's
standard error 1.2533 s / sqrt(n)), in ms: the closed loop of a search stops once its target lies within it.

Everything here sees only callables (protocol -> Measurement), so the method is tested on fake timers
with injected drift and spells, without the host's speed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from profilers.errors import ProfilerError
from profilers.timing import Measurement, TimingProtocol

Timer = Callable[[TimingProtocol], Measurement]

# A round whose reference moves by more than this is unsteady. Round-to-round noise of a low quantile on
# these hosts is 2-5%; spells are 30-45%.
DEFAULT_TOLERANCE = 0.08
# The quiet level a round's reference is judged against (steady or not): a low quantile of the measurement's
# reference timings, so that a spell covering part of them does not raise it (interference only adds time).
# The time a figure converts with is another statistic, the median (``reference_typical``).
BASELINE_QUANTILE = 0.2
MIN_CLEAN = 3
_Z95 = 1.959964


@dataclass(frozen=True)
class DriftSettings:
    """How rounds are judged and repeated."""

    tolerance: float = DEFAULT_TOLERANCE
    extra_rounds: int | None = None  # repeats allowed per candidate; None: as many as its rounds
    # steady rounds a clean figure needs; None: MIN_CLEAN or half its rounds, whichever is fewer (at least 1).
    # Few quiet rounds beat many slow ones: a spell's ratio was measured 2-10% off (the reference and an int8
    # network slowed 1.34x and 1.27x; 1.17x and 1.05x), while the quiet rounds agreed with fresh timings.
    min_clean: int | None = None
    # A reference seen now (its median) this much below the recorded one replaces it: the recorded one was taken
    # in a slow spell (measured: a quick validation inside a spell recorded 1.11x; spells are 1.3-1.45x). Not
    # less: an Intel AMX host's 10-s windows sit up to 7.7% below its typical speed, and a window that fast is
    # the host's moment, not the table's error. None: the recorded time always stands (a record of minutes,
    # ``tfnas.latency.measure.drift_settings_for``: that host's fast state ran 1.25x its typical speed).
    lower_reference: float | None = 0.08
    # A measurement whose reference ran this much above the recorded time throughout is from a slow state that the
    # reference does not cancel, and is not clean (None: never judged so). Set for a record of minutes of this
    # machine (``tfnas.latency.measure.drift_settings_for``): measured on an Intel AMX host, a slow state ran the
    # reference 1.5x (0.58-0.60 ms over a record of 0.40) and the network 1.35x, so its figures read 8-10% low.
    slow_record: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise ProfilerError(f"drift settings: tolerance={self.tolerance!r}, expected a number in (0, 1)")
        if self.extra_rounds is not None and self.extra_rounds < 0:
            raise ProfilerError(f"drift settings: extra_rounds={self.extra_rounds!r}, expected an integer >= 0")
        if self.min_clean is not None and self.min_clean < 1:
            raise ProfilerError(f"drift settings: min_clean={self.min_clean!r}, expected an integer >= 1")
        if self.lower_reference is not None and not 0 <= self.lower_reference < 1:
            raise ProfilerError(
                f"drift settings: lower_reference={self.lower_reference!r}, expected a number in [0, 1) or None"
            )
        if self.slow_record is not None and not self.slow_record > 0:
            raise ProfilerError(f"drift settings: slow_record={self.slow_record!r}, expected a number > 0 or None")

    def over_record(self, seen_ms: float, reference_ms: float | None) -> float | None:
        """The reference seen over the recorded one when that marks a slow state not to believe (``slow_record``),
        else None."""
        if self.slow_record is None or not reference_ms:
            return None
        over = seen_ms / reference_ms
        return over if over > 1.0 + self.slow_record else None

    def repeats_for(self, rounds: int) -> int:
        return rounds if self.extra_rounds is None else self.extra_rounds

    def clean_needed(self, rounds: int) -> int:
        return self.min_clean if self.min_clean is not None else max(1, min(MIN_CLEAN, math.ceil(rounds / 2)))


@dataclass(frozen=True)
class Round:
    """One timing of a candidate between two timings of the reference (ms, the protocol's statistic)."""

    ref_before: float
    value: float
    ref_after: float
    steady: bool = True  # filled in by the judgement

    @property
    def ref(self) -> float:
        return (self.ref_before + self.ref_after) / 2.0

    @property
    def ratio(self) -> float:
        return self.value / self.ref


@dataclass(frozen=True)
class DriftCancelled:
    """A candidate's end-to-end latency, raw and in units of the reference converted to ms."""

    raw_ms: float  # median over its first ``rounds`` rounds of the candidate's time (what a plain timing says)
    ratio: float  # median over steady rounds of candidate / reference
    reference_now_ms: float  # median of the reference timings around this candidate
    reference_ms: float | None  # the reference's quiet time the ratio converts with (None: none known)
    reference_source: str  # where ``reference_ms`` came from ("table", "this measurement", ...)
    cancelled_ms: float | None  # ratio * reference_ms
    uncertainty_ms: float | None  # 95% half-width of ``cancelled_ms`` (of ``raw_ms`` without a reference)
    clean: bool  # enough steady rounds for a figure
    steady_rounds: int
    rounds: list[Round] = field(default_factory=list)
    statistic: str = "p10"
    slow_state: float | None = None  # the steady rounds' reference over its quiet level, when they were all slow
    over_record: float | None = None  # not clean because the reference ran this many times its recorded time
    measurements: list[float] = field(default_factory=list)  # pooled (``pool``): each measurement's own figure

    @property
    def value_ms(self) -> float:
        """The figure a command acts on: drift-cancelled when a reference time is known, else raw."""
        return self.cancelled_ms if self.cancelled_ms is not None else self.raw_ms

    @property
    def measurement_figures(self) -> list[float | None]:
        """Each pooled measurement's figure; one measurement: its own (None when not clean)."""
        return self.measurements or [self.value_ms if self.clean else None]

    @property
    def method(self) -> str:
        if len(self.measurements) > 1:
            k = len(self.measurements)
            head = f"pooled: mean of {k} measurements' figures ({self.steady_rounds} steady rounds in all), each "
            return head + self._one_method("its steady rounds")
        return self._one_method(f"{self.steady_rounds} steady rounds")

    def _one_method(self, over: str) -> str:
        if self.cancelled_ms is None:
            return f"raw: median over rounds of each round's {self.statistic} (no reference time known)"
        return (
            f"drift-cancelled: median over {over} of (candidate / reference), each"
            f" the round's {self.statistic}, x the reference's {self.reference_ms:.4f} ms ({self.reference_source})"
            + (
                f"; the rounds of a slow state (reference {self.slow_state:.2f}x its quiet level)"
                if self.slow_state
                else ""
            )
        )

    def describe(self) -> str:
        """'5.02 ms +/- 0.08 (raw 6.71 ms)', or why there is no figure."""
        if not self.clean and self.over_record:
            return (
                f"no clean figure: the reference ran {self.over_record:.2f}x its recorded time (a slow state of the"
                f" host that slows the reference and the network unlike); raw {self.raw_ms:.3f} ms, not to be trusted;"
                " measure again later, or profile the host again if it stays this slow"
            )
        if not self.clean:
            return (
                f"no clean figure: {self.steady_rounds} of {len(self.rounds)} rounds were steady (the host's speed"
                f" moved by more than the tolerance around the others); raw {self.raw_ms:.3f} ms, not to be trusted"
            )
        u = f" +/- {self.uncertainty_ms:.3f}" if self.uncertainty_ms is not None else ""
        if len(self.measurements) > 1:
            u += f" ({len(self.measurements)} measurements: {', '.join(f'{v:.3f}' for v in self.measurements)})"
        if self.cancelled_ms is None:
            return f"{self.raw_ms:.3f} ms{u} (raw; no reference time known)"
        spell = f"; from a slow state, reference {self.slow_state:.2f}x its quiet level" if self.slow_state else ""
        return (
            f"{self.cancelled_ms:.3f} ms{u} (raw {self.raw_ms:.3f} ms; reference now {self.reference_now_ms:.3f} ms"
            f"{spell})"
        )

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["rounds"] = [asdict(r) for r in self.rounds]
        doc["value_ms"] = self.value_ms
        doc["method"] = self.method
        return doc


def reference_baseline(reference_ms: Sequence[float], quantile: float = BASELINE_QUANTILE) -> float:
    """The reference's quiet time from its timings over a measurement: a low quantile (linear interpolation)."""
    values = sorted(float(v) for v in reference_ms)
    if not values:
        raise ProfilerError("reference baseline: no reference timings")
    pos = quantile * (len(values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def reference_typical(reference_ms: Sequence[float]) -> float:
    """The reference's typical time from its timings: their median, the statistic of the ratio and raw figures it
    converts (a low quantile of a short window records the host's fast moments: module docstring)."""
    if not reference_ms:
        raise ProfilerError("reference time: no reference timings")
    return float(statistics.median(float(v) for v in reference_ms))


def reference_timings(figures: Sequence[DriftCancelled]) -> list[float]:
    """The reference timings behind ``figures`` of one measurement: each round's closing timing (the one that
    opened the measurement aside), each once: the sequencer reuses a round's closing timing as the next
    round's opening one."""
    return [r.ref_after for f in figures for r in f.rounds]


def median_half_width(values: Sequence[float]) -> float:
    """95% half-width of the median of ``values`` (robust: MAD-based; inf for fewer than 2 values)."""
    if len(values) < 2:
        return math.inf
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return _Z95 * 1.2533 * 1.4826 * mad / math.sqrt(len(values))


def _judge(r: Round, ref_quiet: float, tol: float) -> Round:
    agree = abs(r.ref_before / r.ref_after - 1.0) <= tol
    typical = abs(r.ref / ref_quiet - 1.0) <= tol
    return Round(r.ref_before, r.value, r.ref_after, agree and typical)


class _Sequencer:
    """Times candidates with the reference between each two (R C R C R ...), reusing the last reference timing."""

    def __init__(self, ref: Timer, protocol: TimingProtocol) -> None:
        self.ref, self.protocol = ref, protocol
        self.last: float | None = None

    def reference(self) -> float:
        self.last = self.ref(self.protocol).latency_ms
        return self.last

    def visit(self, timer: Timer) -> tuple[float, float, float]:
        before = self.last if self.last is not None else self.reference()
        value = timer(self.protocol).latency_ms
        return before, value, self.reference()


def time_referenced(
    timers: Sequence[Timer],
    reference: Timer,
    protocol: TimingProtocol,
    rounds: int,
    seed: int = 0,
    settings: DriftSettings | None = None,
    on_visit: Callable[[], None] | None = None,
) -> list[list[Round]]:
    """Per candidate, its judged rounds: ``rounds`` interleaved rounds, then unsteady ones repeated (bounded).

    Repeated rounds replace nothing: every round is kept with its judgement, so a report shows the spells."""
    if rounds < 1:
        raise ProfilerError(f"rounds={rounds!r}: expected an integer >= 1")
    settings = settings or DriftSettings()
    rng = random.Random(seed)
    seq = _Sequencer(reference, protocol)
    raw: list[list[Round]] = [[] for _ in timers]
    for _ in range(rounds):
        order = list(range(len(timers)))
        rng.shuffle(order)
        for i in order:
            raw[i].append(Round(*seq.visit(timers[i])))
            if on_visit:
                on_visit()
    ref_quiet = reference_baseline([r.ref for rs in raw for r in rs])
    ref_median = statistics.median(r.ref for rs in raw for r in rs)
    judged = [[_judge(r, ref_quiet, settings.tolerance) for r in rs] for rs in raw]
    budget = [settings.repeats_for(rounds)] * len(timers)
    while True:  # repeat unsteady rounds, interleaved, while a candidate is short of steady ones (bounded)
        todo = [i for i, rs in enumerate(judged) if budget[i] > 0 and sum(r.steady for r in rs) < rounds]
        if not todo:
            break
        rng.shuffle(todo)
        for i in todo:
            budget[i] -= 1
            judged[i].append(_judge(Round(*seq.visit(timers[i])), ref_quiet, settings.tolerance))
            if on_visit:
                on_visit()
    need = settings.clean_needed(rounds)
    for i, rs in enumerate(judged):  # too few quiet rounds: the rounds of the measurement's usual state, if enough
        if sum(r.steady for r in rs) < need:
            usual = [_judge(r, ref_median, settings.tolerance) for r in rs]
            if sum(r.steady for r in usual) >= need:
                judged[i] = usual
    return judged


def summarize(
    rounds: Sequence[Round],
    first: int,
    reference_ms: float | None,
    reference_source: str,
    settings: DriftSettings | None = None,
    statistic: str = "p10",
) -> DriftCancelled:
    """One candidate's figure from its judged rounds (``first``: how many were the planned rounds)."""
    settings = settings or DriftSettings()
    rounds = list(rounds)
    steady = [r for r in rounds if r.steady]
    raw = float(statistics.median(r.value for r in rounds[:first]))
    ref_now = float(statistics.median(v for r in rounds for v in (r.ref_before, r.ref_after)))
    clean = len(steady) >= settings.clean_needed(first)
    over = settings.over_record(ref_now, reference_ms)
    use = steady or rounds
    ratio = float(statistics.median(r.ratio for r in use))
    cancelled = ratio * reference_ms if reference_ms is not None else None
    state = statistics.median(r.ref for r in use) / min(r.ref for r in rounds)  # interference only adds time
    slow_state = state if clean and state > 1.0 + settings.tolerance else None
    half = median_half_width([r.ratio for r in use]) if clean else math.inf
    if reference_ms is not None:
        uncertainty = half * reference_ms
    else:
        uncertainty = median_half_width([r.value for r in rounds[:first]])
    return DriftCancelled(
        raw_ms=raw,
        ratio=ratio,
        reference_now_ms=ref_now,
        reference_ms=reference_ms,
        reference_source=reference_source if reference_ms is not None else "none",
        cancelled_ms=cancelled,
        uncertainty_ms=uncertainty if math.isfinite(uncertainty) else None,
        clean=clean and over is None,
        steady_rounds=len(steady),
        rounds=rounds,
        statistic=statistic,
        slow_state=slow_state,
        over_record=over,
    )


def pool(figures: Sequence[DriftCancelled]) -> DriftCancelled:
    """One figure from several measurements of one network (separate processes, seconds apart).

    Why: a measurement's stated uncertainty comes from its own rounds, and the rounds of one measurement share
    a state (the process, the minute) that the next measurement does not. Measured (10 fresh measurements of
    the README main job's net, three series): the figures moved 1.9-3.2% (stdev) while each stated 0.8%, and
    the mean of two consecutive ones moved 1.3-2.5%. So the pooled figure is the mean of the clean
    measurements' figures (each is already spell-judged), and its uncertainty the larger of the figures' own (combined, as for a mean) and
    the 95% half-width from their spread (normal approximation: with 2-4 measurements a t interval would
    span the loop's whole range). Unclean measurements are left out; with none clean, the result is not clean."""
    figures = list(figures)
    if not figures:
        raise ProfilerError("pool: no measurements")
    clean = [f for f in figures if f.clean]
    if len(figures) == 1 or len(clean) <= 1:
        return clean[0] if clean else figures[-1]
    values = [f.value_ms for f in clean]
    own = [f.uncertainty_ms for f in clean if f.uncertainty_ms is not None]
    within = math.sqrt(sum(u * u for u in own)) / len(clean) if len(own) == len(clean) else math.inf
    between = _Z95 * statistics.stdev(values) / math.sqrt(len(clean))
    half = max(within, between)
    cancelled = [f.cancelled_ms for f in clean if f.cancelled_ms is not None]
    slow = [f.slow_state for f in clean if f.slow_state]
    return DriftCancelled(
        raw_ms=float(statistics.fmean(f.raw_ms for f in clean)),
        ratio=float(statistics.fmean(f.ratio for f in clean)),
        reference_now_ms=float(statistics.median(f.reference_now_ms for f in clean)),
        reference_ms=clean[0].reference_ms if len(cancelled) == len(clean) else None,
        reference_source=clean[0].reference_source,
        cancelled_ms=float(statistics.fmean(cancelled)) if len(cancelled) == len(clean) else None,
        uncertainty_ms=half if math.isfinite(half) else None,
        clean=True,
        steady_rounds=sum(f.steady_rounds for f in clean),
        rounds=[r for f in figures for r in f.rounds],
        statistic=clean[0].statistic,
        slow_state=float(statistics.median(slow)) if len(slow) * 2 > len(clean) else None,
        measurements=values,
    )


def figure_of(rounds: Sequence[Round], reference_ms: float) -> float:
    """The drift-cancelled figure of some rounds: median ratio of the steady ones (all when none is) x reference."""
    use = [r for r in rounds if r.steady] or list(rounds)
    return float(statistics.median(r.ratio for r in use)) * reference_ms


def measure_referenced(
    timers: Sequence[Timer],
    reference: Timer,
    protocol: TimingProtocol,
    rounds: int,
    reference_ms: float | None = None,
    reference_source: str = "table",
    seed: int = 0,
    settings: DriftSettings | None = None,
    on_visit: Callable[[], None] | None = None,
) -> tuple[list[DriftCancelled], float]:
    """Per candidate its figure, and the reference's typical time seen in this measurement (the median of its
    timings, ``reference_typical``).

    Without ``reference_ms`` the figures convert with that time ("this measurement"): short spells
    still cancel, but a spell spanning most of the measurement does not; a table's recorded time is better.
    A recorded time above the one seen now by more than ``settings.lower_reference`` was itself taken in a
    spell, and the one seen now converts instead (unless the record is of minutes: ``lower_reference`` None)."""
    settings = settings or DriftSettings()
    judged = time_referenced(timers, reference, protocol, rounds, seed, settings, on_visit)
    seen = reference_typical([v for rs in judged for r in rs for v in (r.ref_before, r.ref_after)])
    if reference_ms is None:
        reference_ms, reference_source = seen, "this measurement"
    elif settings.lower_reference is not None and seen < reference_ms * (1.0 - settings.lower_reference):
        reference_source = f"this measurement; the {reference_source}'s {reference_ms:.4f} ms was taken in a slow spell"
        reference_ms = seen
    stat = protocol.statistic
    return [summarize(rs, rounds, reference_ms, reference_source, settings, stat) for rs in judged], seen
