"""Time MBV2 architectures end to end: the adapter to the family-free timing, and ``tfnas measure``.

``tfnas.latency.measure`` times any ``Network`` (an input shape and a module builder); ``ArchNetwork`` is an
architecture seen that way, built exactly as ``tfnas export`` builds it. ``measure_arch`` is ``tfnas
measure`` as a library call: a drift-cancelled figure of one architecture, optionally compared with a table
of this machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from profilers.drift import DriftCancelled
from profilers.drift import pool as pool_figures
from profilers.fingerprint import current_fingerprint
from tfnas.errors import TfnasError
from tfnas.latency.measure import (
    DEFAULT_PROTOCOL,
    Runtime,
    TimingSettings,
    drift_settings_for,
    in_fresh_process,
    measure_drift_cancelled,
    protocol_for,
    table_quantization,
    table_reference_ms,
)
from tfnas.latency.table import open_table, table_device, table_precision
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.keys import SpaceNeeds
from tfnas.mbv2.net import build_model
from tfnas.mbv2.predict import predict

MEASURE_ROUNDS = 5  # tfnas measure: one round swings by several % on a shared machine; the median of 5 does not


@dataclasses.dataclass(frozen=True)
class ArchNetwork:
    """An architecture as a ``tfnas.latency.measure.Network``: its derived network at its resolution."""

    arch: Architecture

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.arch.space.in_channels, self.arch.resolution, self.arch.resolution)

    def build(self) -> nn.Module:
        return build_model(self.arch)


def networks(archs: Sequence[Architecture]) -> list[ArchNetwork]:
    return [ArchNetwork(a) for a in archs]


@dataclasses.dataclass
class Measured:
    """What ``measure_arch`` found: the drift-cancelled figure and the JSON document ``tfnas measure --json`` writes."""

    figure: DriftCancelled
    doc: dict[str, Any]

    @property
    def shape(self) -> str:
        d = self.doc
        res = d["resolution"]
        return f"{d['backend']} {d['precision']}, {d['threads']} thread(s), batch {d['batch']}, {res}x{res}"


def measure_arch(
    arch_path: str | Path,
    backend: str = "ort",
    threads: int = 1,
    batch: int = 1,
    precision: str | None = None,
    rounds: int = MEASURE_ROUNDS,
    lut: str | Path | None = None,
    allow_foreign: bool = False,
    say: Callable[[str], None] = print,
    measurements: int = 1,
) -> Measured:
    """``tfnas measure``: the architecture in ``arch_path`` timed here, drift-cancelled over ``rounds``.

    ``precision`` None: the ``lut``'s, else fp32. With ``lut`` (checked before any timing: a foreign table's
    numbers must not be compared with ours) the network is timed at the table's precision and statistic
    (int8: quantized as the table's graphs were), converted with the reference time the table recorded, and
    the table's prediction and its error are added. ``measurements`` > 1: that many measurements, each in a
    new process, pooled (``profilers.drift.pool``): one measurement's +/- covers its own rounds only, and
    measurements seconds apart differ by more (measured: 1.9-3.2% against a stated 0.8%).
    """
    if rounds < 1:
        raise TfnasError(f"--rounds {rounds}: expected an integer >= 1")
    if measurements < 1:
        raise TfnasError(f"--measurements {measurements}: expected an integer >= 1")
    arch = load_arch(arch_path)
    table, protocol = None, DEFAULT_PROTOCOL
    rt = Runtime(backend, threads, batch, precision or "fp32")
    if lut:
        table = open_table(
            lut, SpaceNeeds(arch.space), batch=batch, resolution=arch.resolution, threads=threads,
            precision=precision, require_device="measuring", allow_foreign=allow_foreign,
        )  # fmt: skip
        protocol = protocol_for(table.protocol)
        rt = Runtime(backend, threads, batch, table_precision(table), table_quantization(table))  # as the table was
        say(f"table device: {table_device(table)}")
    ref_ms = table_reference_ms(table) if table is not None else None
    timing, net = TimingSettings(rounds, protocol=protocol), ArchNetwork(arch)
    run = in_fresh_process if measurements > 1 else (lambda fn, *a: fn(*a))  # one: here, as before
    settings = drift_settings_for(table) if table is not None else None
    each = [run(measure_drift_cancelled, [net], rt, timing, ref_ms, "table", settings) for _ in range(measurements)]
    fig = pool_figures([figs[0] for figs, _ in each])
    seen = min((s for _, s in each if s is not None), default=None)
    doc = _document(str(arch_path), arch, rt, fig, seen)
    if table is not None and fig.clean:
        pred = predict(arch, table)
        err = (pred - doc["latency_ms"]) / doc["latency_ms"] * 100
        doc.update(predicted_ms=pred, error_pct=err, lut=str(lut))
    return Measured(fig, doc)


def _document(arch_path: str, arch: Architecture, rt: Runtime, fig: DriftCancelled, seen: float | None) -> dict:
    return {
        "arch": arch_path,
        "backend": rt.backend,
        "threads": rt.threads,
        "batch": rt.batch,
        "resolution": arch.resolution,
        "precision": rt.precision,
        "quantization": rt.quantization.to_dict() if rt.quantization is not None else None,
        "latency_ms": fig.value_ms if fig.clean else None,
        "raw_ms": fig.raw_ms,
        "cancelled_ms": fig.cancelled_ms,
        "uncertainty_ms": fig.uncertainty_ms,
        "clean": fig.clean,
        "slow_state": fig.slow_state,  # set when the figure came from the rounds of a spell (their reference / quiet)
        "over_record": fig.over_record,  # set when not clean: the reference ran this many times the table's record
        "reference_ms": fig.reference_ms,  # the reference's typical time the figure converts with
        "reference_source": fig.reference_source,
        "reference_seen_ms": seen,
        "statistic": fig.method,
        "device": current_fingerprint(rt.threads, batch=rt.batch, resolution=arch.resolution, precision=rt.precision),
        "rounds": [dataclasses.asdict(r) for r in fig.rounds],
        "measurements_ms": fig.measurement_figures,
    }
