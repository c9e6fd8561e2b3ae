"""The measured closed loop (``search.measure_final``): measure the derived net, re-aim its widths, stop.

For tables whose calibration does not fit this kind of network. A measurement is drift-cancelled
(``profilers.drift``): each of ``measure_rounds`` rounds times the net between two timings of the reference
network, so a slow spell or a busy neighbour cancels; rounds the reference shows to be unsteady are repeated,
and a measurement without enough steady rounds is never acted on (the loop stops there).

A network's figure pools up to ``pool`` measurements, each in a fresh process (``profilers.drift.pool``): one
measurement's own uncertainty misses what the next measurement does not share (measured: 10 measurements of one
net moved 1.9-3.2% while each stated 0.8%), and the loop's 2% tolerance is finer than that. More are taken while
the decision is open: after the first, and until the figure misses the target clearly (by more than the
tolerance plus its uncertainty) or ``pool`` is reached. Unclean measurements are left out of the pool.

Stop rules: the loop stops once the measured latency is within ``tolerance`` of the target, or the target lies
within the measurement's own uncertainty, or after ``iterations`` re-aims, or when nothing is left to move.
Re-aiming moves widths only (ops or depths only where widths alone cannot reach the goal), so the
network-level ratio being corrected stays that of the same network; the iteration measured closest to the
target is kept. The next aim is the last network's prediction scaled by its measured ratio until two measured
networks bracket the target; then it lies between them (secant): the runtime's latency can grow faster with
width than the table's (measured, CIFAR demo: measured/predicted 0.91 for one network, 1.07 for one 10%
wider), and scaling by the last ratio alone then swings from one side of the target to the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from profilers.drift import DriftCancelled
from profilers.drift import pool as pool_figures
from profilers.lut import LatencyTable
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.search.derive import Choice, Prior
from tfnas.mbv2.search.elastic import hit_target
from tfnas.mbv2.search.latency import LatencyModel

Measure = Callable[[Architecture], DriftCancelled]


def table_measurer(table: LatencyTable, rounds: int) -> Measure:
    """Times an architecture as ``table`` was measured: its runtime, shape, statistic and precision (int8:
    quantized as the table's graphs were), drift-cancelled over ``rounds`` rounds, in a process of its own
    (this one has just trained, and timed networks 3% slower: issue 24)."""
    from tfnas.latency.measure import TimingSettings, in_fresh_process, measure_table_drift_cancelled
    from tfnas.mbv2.measure import ArchNetwork

    def measure(arch: Architecture) -> DriftCancelled:
        return in_fresh_process(measure_table_drift_cancelled, [ArchNetwork(arch)], table, TimingSettings(rounds))[0][0]

    return measure


def next_aim(history: list[tuple[float, float]], target_ms: float) -> float:
    """The predicted latency to aim at next, from the (predicted, measured) pairs so far: between the two
    networks measured nearest the target on either side when there are such (secant), else the last one
    scaled by its measured ratio."""
    below = [h for h in history if h[1] < target_ms]
    above = [h for h in history if h[1] > target_ms]
    if below and above:
        (p1, m1), (p2, m2) = max(below, key=lambda h: h[1]), min(above, key=lambda h: h[1])
        return p1 + (target_ms - m1) * (p2 - p1) / (m2 - m1)
    predicted, measured = history[-1]
    return predicted * target_ms / measured


def _row(iteration: int, predicted: float, measured: float | None, fig: DriftCancelled) -> dict[str, Any]:
    """One iteration's record in ``report.json``'s ``measured_loop``: the figure and every round behind it."""
    return {
        "iteration": iteration, "predicted_ms": predicted, "measured_ms": measured, "raw_ms": fig.raw_ms,
        "uncertainty_ms": fig.uncertainty_ms, "clean": fig.clean, "slow_state": fig.slow_state,
        "over_record": fig.over_record,
        "figure": fig.describe(),
        "rounds_ms": [r.value for r in fig.rounds], "reference_ms": [r.ref for r in fig.rounds],
        "steady": [r.steady for r in fig.rounds], "method": fig.method,
        "measurements_ms": fig.measurement_figures,
    }  # fmt: skip


def measure_pooled(
    measure: Measure, arch: Architecture, target_ms: float, tolerance: float, pool: int
) -> DriftCancelled:
    """``arch``'s figure pooled over up to ``pool`` measurements: more while the decision is open (fewer than two
    clean ones, or the target not clearly missed); up to ``2 * pool`` while none is clean (a slow state of the
    host lasts tens of seconds: measured on an Intel AMX host, two measurements in a row)."""
    figs = [measure(arch)]
    while True:
        fig = pool_figures(figs)
        clean = sum(f.clean for f in figs)
        clear_miss = fig.clean and abs(fig.value_ms - target_ms) - (fig.uncertainty_ms or 0.0) > tolerance * target_ms
        if (len(figs) >= pool and (clean or len(figs) >= 2 * pool)) or (clear_miss and clean >= 2):
            return fig
        figs.append(measure(arch))


def measured_loop(
    lat: LatencyModel,
    choice: Choice,
    prior: Prior,
    target_ms: float,
    measure: Measure,
    *,
    tolerance: float,
    iterations: int,
    final_tolerance: float,
    pool: int,
) -> tuple[Choice, list[dict[str, Any]]]:
    """(the chosen architecture, the loop's records): measure ``choice`` with ``measure`` and, while it misses
    ``target_ms`` by more than ``tolerance`` and by more than the measurement's own uncertainty, re-aim its
    predicted latency by the measured ratio (within ``final_tolerance``); each figure pools up to ``pool``
    measurements (``measure_pooled``). The last record names the iteration
    kept (None: the first measurement was not clean, and ``choice`` stands unchanged)."""
    ops, widths, depths = choice
    loop: list[dict[str, Any]] = []
    history: list[tuple[float, float]] = []  # (predicted, measured) of each clean iteration
    best = None
    for it in range(iterations + 1):
        fig = measure_pooled(measure, lat.to_arch(ops, widths, depths), target_ms, tolerance, pool)
        measured = fig.value_ms if fig.clean else None
        predicted = lat.arch_ms(ops, widths, depths)
        loop.append(_row(it, predicted, measured, fig))
        if measured is None:
            break  # no measurement got clean rounds: nothing to re-aim on
        miss = abs(measured / target_ms - 1.0)
        if best is None or miss < best[0]:
            best = (miss, list(ops), list(widths), list(depths), it)
        within = abs(measured - target_ms) <= (fig.uncertainty_ms or 0.0)
        if miss <= tolerance or within or it == iterations:
            break
        history.append((predicted, measured))
        goal = next_aim(history, target_ms)
        # widths first; ops or depths change only when widths alone cannot reach the goal
        ops, new, depths, _ = hit_target(lat, ops, widths, depths, goal, final_tolerance, *prior)
        if new == widths and loop[-1]["predicted_ms"] == lat.arch_ms(ops, new, depths):
            break  # nothing left to move
        widths = new
    if best is None:  # the first measurement was not clean: the table's choice stands, unchanged
        loop.append({"chosen_iteration": None, "measured_ms": None})
        return (ops, widths, depths), loop
    _, ops, widths, depths, chosen = best
    loop.append({"chosen_iteration": chosen, "measured_ms": loop[chosen]["measured_ms"]})
    return (ops, widths, depths), loop
