"""Predict an MBV2 architecture's latency from a LUT: sum of its op entries, then the table's calibration.

The sum of per-op latencies misses what only a whole network shows (layout
reorders between ops, fusion across blocks, and weights that must stream
through the caches, where a per-op graph keeps its own hot); ``calibrate`` fits
``measured ~ scale * sum + ms_per_mweight * Mweights + offset`` on real
end-to-end timings (``tfnas.mbv2.calibrate``), and ``predict`` applies it when the table has one.
``predict_report`` is ``tfnas predict``: the per-part breakdown, the total and the table's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.lut import LatencyTable
from tfnas.errors import LatencyTableError
from tfnas.latency.calibrate import Calibration, apply_calibration, table_calibration
from tfnas.latency.table import Lookup, as_lookup, device_match, open_table, table_device, table_precision
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.keys import SpaceNeeds, arch_entries, arch_mweights, fixed_signatures, layer_key, layer_weights
from tfnas.mbv2.space import MBV2Space


def _check_shape(arch: Architecture, lookup: Lookup) -> None:
    res = lookup.table.fingerprint.get("resolution")
    if res is not None and res != arch.resolution:
        raise LatencyTableError(
            f"LUT {lookup.table.source} was measured at resolution {res}; the architecture is at"
            f" {arch.resolution} (predict at the deployment resolution, or profile a table for it)"
        )


def predict_breakdown(arch: Architecture, table: LatencyTable | Lookup) -> list[tuple[str, int | None, float]]:
    """(key, width, ms) per part the network runs: stem, first block, active layers, head."""
    lookup = as_lookup(table)
    _check_shape(arch, lookup)
    return [(key, width, lookup(key, width)) for key, width in arch_entries(arch)]


def predict(arch: Architecture, table: LatencyTable | Lookup, calibrated: bool = True) -> float:
    """Predicted latency in ms (calibrated when the table has a calibration and ``calibrated``)."""
    raw = sum(ms for _, _, ms in predict_breakdown(arch, table))
    if not calibrated:
        return raw
    return apply_calibration(raw, table_calibration(table), arch_mweights(arch, as_lookup(table).grid.runtime_width))


def layer_extremes(
    space: MBV2Space, lookup: Lookup, resolution: int | None = None, cal: Calibration | None = None
) -> list[tuple[float, float]]:
    """Per searchable layer, the (min, max) cost over all ops and all their widths (raw ms without ``cal``)."""
    cal = cal or Calibration()
    out = []
    for g in space.layers(resolution):
        values = []
        for op in space.ops:
            key = layer_key(space, g, op)
            lo, hi = space.width_bounds(op, g.in_ch)
            values += [
                cal.layer(lookup(key, w), layer_weights(space, g, op, lookup.grid.runtime_width(w)))
                for w in range(lo, hi + 1)
            ]
        out.append((min(values), max(values)))
    return out


def feasible_range(
    space: MBV2Space, table: LatencyTable | Lookup, resolution: int | None = None, calibrated: bool = True
) -> tuple[float, float]:
    """(fastest, slowest) predicted latency over every architecture of ``space``, exactly.

    Layers are independent given the stage layout, so per stage the extreme over
    depths is a min/max over cumulative sums of per-layer extremes.
    """
    lookup = as_lookup(table)
    res = resolution or lookup.table.fingerprint.get("resolution") or space.resolution
    cal = Calibration.of(table_calibration(lookup) if calibrated else None)
    fixed = cal.fixed(sum(lookup(sig.key, None) for sig in fixed_signatures(space, res).values()))
    extremes = layer_extremes(space, lookup, res, cal)
    fast = slow = fixed
    i = 0
    for s, stage in enumerate(space.stages):
        layer_ext = extremes[i : i + stage.layers]
        i += stage.layers
        cum_min = [sum(e[0] for e in layer_ext[:d]) for d in range(stage.layers + 1)]
        cum_max = [sum(e[1] for e in layer_ext[:d]) for d in range(stage.layers + 1)]
        depths = range(space.min_depth(s), stage.layers + 1)
        fast += min(cum_min[d] for d in depths)
        slow += max(cum_max[d] for d in depths)
    return fast, slow


@dataclass
class PredictReport:
    """``tfnas predict``'s breakdown: per part (key, width, ms), their sum, the calibrated total and the device."""

    arch: str
    lut: str
    rows: list[tuple[str, int | None, float]]
    sum_ms: float
    mweights: float
    predicted_ms: float
    precision: str
    calibration: dict[str, Any] | None
    device: str  # the table's device
    same_device: bool  # whether this machine is that device
    device_note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "lut": self.lut,
            "sum_ms": self.sum_ms,
            "mweights": self.mweights,
            "predicted_ms": self.predicted_ms,
            "precision": self.precision,
            "calibration": self.calibration,
            "layers": [{"key": k, "width": w, "ms": ms} for k, w, ms in self.rows],
        }


def predict_report(arch_path: str | Path, lut: str | Path, raw: bool = False) -> PredictReport:
    """The architecture in ``arch_path`` predicted from ``lut`` (checked against its space and resolution), part
    by part; ``raw`` ignores the table's calibration."""
    arch = load_arch(arch_path)
    table = open_table(lut, SpaceNeeds(arch.space), resolution=arch.resolution)
    rows = predict_breakdown(arch, table)
    total_raw = sum(ms for _, _, ms in rows)
    cal = None if raw else table_calibration(table)
    mweights = arch_mweights(arch, Lookup(table).grid.runtime_width)
    match = device_match(table)
    return PredictReport(
        str(arch_path), str(lut), rows, total_raw, mweights, apply_calibration(total_raw, cal, mweights),
        table_precision(table), cal, table_device(table), match.same_device, match.describe(),
    )  # fmt: skip
