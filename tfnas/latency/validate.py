"""Does a latency table describe the machine at hand? The verdict, its figures and its report; no family.

A table is checked against whole networks timed here, with the table's statistic.
The networks are search-like (random, widths on the table's alignment, as a search
derives them) and are timed in interleaved rounds; the rounds are split into two
passes, so the same run also measures how well this host repeats itself
(pass-to-pass MAPE). No table can be checked below that noise floor, so the verdict
weighs the table's error against it. A family samples, predicts and times the networks
(``mbv2.validate``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfnas.latency.calibrate import error_stats
from tfnas.utils.io import save_figure
from tfnas_base.atomic import atomic_write_json

# Verdict thresholds: a table "holds" when its error is within this or within twice the host's noise floor.
MAPE_OK = 5.0
TAU_OK = 0.8
NOISE_TOO_HIGH = 5.0  # pass-to-pass MAPE above which a host cannot judge any table


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-a: the share of concordant minus discordant pairs (ties count as neither)."""
    n = len(a)
    if n < 2:
        return math.nan
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            s += 1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0
    return 2.0 * s / (n * (n - 1))


def error_report(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """``error_stats`` (MAPE, worst, bias) plus ratio (median measured/predicted), share within 5% / 10%, tau."""
    rel = [abs(p - m) / m * 100.0 for p, m in zip(predicted, measured)]
    return {
        **error_stats(predicted, measured),
        "ratio": statistics.median(m / p for p, m in zip(predicted, measured)),
        "within_5": sum(r <= 5.0 for r in rel) / len(rel),
        "within_10": sum(r <= 10.0 for r in rel) / len(rel),
        "kendall_tau": kendall_tau(predicted, measured),
    }


@dataclass
class Validation:
    """What ``tfnas validate`` found; ``verdict`` is one of holds / does-not-hold / foreign / host-too-noisy."""

    lut: str
    device: str
    same_device: bool
    device_note: str
    verdict: str = "not-timed"
    reason: str = ""
    statistic: str = ""
    precision: str = "fp32"
    networks: int = 0
    rounds: int = 0
    predicted_ms: list[float] = field(default_factory=list)
    measured_ms: list[float] = field(default_factory=list)
    pass_a_ms: list[float] = field(default_factory=list)
    pass_b_ms: list[float] = field(default_factory=list)
    table: dict[str, float] = field(default_factory=dict)  # predicted vs measured
    noise_floor: dict[str, float] = field(default_factory=dict)  # pass A vs pass B
    seconds: float = 0.0
    raw_measured_ms: list[float] = field(default_factory=list)  # plain timings (median of round statistics)
    raw_table: dict[str, float] = field(default_factory=dict)  # predicted vs raw measured
    reference_ms: float | None = None  # the reference time the measured figures convert with
    reference_source: str = ""
    reference_seen_ms: float | None = None  # the reference's quiet time seen in this validation
    unsteady_rounds: int = 0  # rounds the reference showed to be in a spell (repeated)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"table: {self.lut}", f"  device: {self.device}", f"  this machine: {self.device_note}"]
        if self.table:
            t, nf = self.table, self.noise_floor
            lines += [
                f"  {self.networks} search-like networks ({self.precision}), {self.rounds} interleaved rounds each"
                f" ({self.statistic}), {self.seconds:.0f} s",
                f"  predicted vs measured: MAPE {t['mape']:.2f}%, worst {t['worst']:.1f}%, bias {t['bias']:+.2f}%,"
                f" ratio {t['ratio']:.3f}, within 5% {t['within_5']:.0%}, within 10% {t['within_10']:.0%},"
                f" Kendall tau {t['kendall_tau']:.2f}",
                f"  noise floor (pass A vs pass B): MAPE {nf['mape']:.2f}%, worst {nf['worst']:.1f}%",
            ]
            if self.raw_table:
                lines.append(
                    f"  figures are drift-cancelled (reference {self.reference_ms:.4f} ms, {self.reference_source};"
                    f" {self.unsteady_rounds} unsteady round(s) repeated); raw timings: MAPE"
                    f" {self.raw_table['mape']:.2f}%, ratio {self.raw_table['ratio']:.3f}"
                )
        lines.append(f"verdict: {self.verdict.upper()}: {self.reason}")
        return "\n".join(lines)


def judge(table: dict[str, float], noise: dict[str, float]) -> tuple[str, str]:
    """The verdict from the table's error and the host's noise floor (see the module doc)."""
    floor = noise["mape"]
    if floor > NOISE_TOO_HIGH:
        return "host-too-noisy", f"this host repeats itself only within {floor:.1f}% MAPE; rerun when it is quieter"
    limit = max(MAPE_OK, 2.0 * floor)
    if table["mape"] <= limit and table["kendall_tau"] >= TAU_OK:
        return "holds", (
            f"MAPE {table['mape']:.2f}% <= {limit:.1f}% (max of {MAPE_OK:g}% and twice the noise floor"
            f" {floor:.2f}%), tau {table['kendall_tau']:.2f} >= {TAU_OK}"
        )
    return "does-not-hold", (
        f"MAPE {table['mape']:.2f}% (limit {limit:.1f}%), tau {table['kendall_tau']:.2f} (limit {TAU_OK}),"
        f" measured/predicted {table['ratio']:.3f}: profile this machine (`tfnas profile`) or recalibrate"
    )


def fill_drift_cancelled(result: Validation, figs: list, seen: float | None, half: int) -> None:
    from profilers.drift import figure_of

    result.measured_ms = [f.value_ms for f in figs]
    result.raw_measured_ms = [f.raw_ms for f in figs]
    ref = figs[0].reference_ms if figs else None
    if ref is None:  # no reference network on this backend: raw passes
        result.pass_a_ms = [statistics.median(r.value for r in f.rounds[:half]) if f.rounds else f.raw_ms for f in figs]
        result.pass_b_ms = [statistics.median(r.value for r in f.rounds[half:]) if f.rounds else f.raw_ms for f in figs]
    else:
        result.pass_a_ms = [figure_of(f.rounds[:half], ref) for f in figs]
        result.pass_b_ms = [figure_of(f.rounds[half : 2 * half], ref) for f in figs]
        result.raw_table = error_report(result.predicted_ms, result.raw_measured_ms)
    result.statistic = figs[0].method if figs else ""
    result.reference_ms, result.reference_seen_ms = ref, seen
    result.reference_source = figs[0].reference_source if figs else ""
    result.unsteady_rounds = sum(not r.steady for f in figs for r in f.rounds)


def write_outputs(result: Validation, out_json: str | Path, plot: str | Path | None = None) -> None:
    """The JSON report and, where matplotlib is installed, a predicted-vs-measured scatter plot."""
    atomic_write_json(out_json, result.to_dict())
    if plot is None or not result.predicted_ms:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, m = result.predicted_ms, result.measured_ms
    lo, hi = min(p + m) * 0.9, max(p + m) * 1.1
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.92", label="±10%")
    ax.fill_between([lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="0.82", label="±5%")
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.errorbar(
        p,
        m,
        # the drift-cancelled figure (steady rounds of both passes) can lie outside the two passes' range
        yerr=[[max(0.0, mi - min(a, b)) for mi, a, b in zip(m, result.pass_a_ms, result.pass_b_ms)],
              [max(0.0, max(a, b) - mi) for mi, a, b in zip(m, result.pass_a_ms, result.pass_b_ms)]],
        fmt="o", ms=4, capsize=2, label="networks (bars: pass A vs B)",
    )  # fmt: skip
    ax.set_xlabel("predicted (ms)")
    ax.set_ylabel(f"measured here (ms, {result.statistic.split()[-1]})")
    t, nf = result.table, result.noise_floor
    ax.set_title(
        f"{result.verdict}: MAPE {t['mape']:.1f}% (noise floor {nf['mape']:.1f}%), tau {t['kendall_tau']:.2f}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, plot, dpi=110)
    plt.close(fig)
