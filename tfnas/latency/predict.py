"""Predict an architecture's latency from a LUT: sum of its op entries, then the table's calibration.

The sum of per-op latencies misses what only a whole network shows (layout
reorders between ops, fusion across blocks, and weights that must stream
through the caches, where a per-op graph keeps its own hot); ``calibrate`` fits
``measured ~ scale * sum + ms_per_mweight * Mweights + offset`` on real
end-to-end timings, and ``predict`` applies it when the table has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profilers.lut import LatencyTable
from tfnas.errors import LatencyTableError
from tfnas.latency.table import Lookup, as_lookup
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.keys import arch_entries, arch_mweights, fixed_signatures, layer_key, layer_weights
from tfnas.mbv2.space import MBV2Space


def table_calibration(table: LatencyTable | Lookup) -> dict[str, Any] | None:
    """The table's calibration block, or None."""
    return (table.table if isinstance(table, Lookup) else table).calibration


@dataclass(frozen=True)
class Calibration:
    """measured = scale * (sum of op entries) + ms_per_mweight * (millions of layer weights) + offset_ms.

    The identity (1, 0, 0) when a table has no calibration. Layer costs are
    additive, so a search can mix them per layer and add ``fixed`` once.
    """

    scale: float = 1.0
    offset_ms: float = 0.0
    ms_per_mweight: float = 0.0

    @classmethod
    def of(cls, calibration: dict[str, Any] | None) -> Calibration:
        if not calibration:
            return cls()
        return cls(
            float(calibration["scale"]),
            float(calibration["offset_ms"]),
            float(calibration.get("ms_per_mweight", 0.0)),
        )

    def layer(self, ms: float, weights: float) -> float:
        """Calibrated cost of one searchable layer: its table ms and its weight count (not millions)."""
        return self.scale * ms + self.ms_per_mweight * weights / 1e6

    def fixed(self, ms: float) -> float:
        """Calibrated cost of the fixed parts (stem, first block, head) plus the network overhead."""
        return self.scale * ms + self.offset_ms

    def total(self, raw_ms: float, mweights: float = 0.0) -> float:
        return self.scale * raw_ms + self.ms_per_mweight * mweights + self.offset_ms


def apply_calibration(raw_ms: float, calibration: dict[str, Any] | None, mweights: float = 0.0) -> float:
    return Calibration.of(calibration).total(raw_ms, mweights)


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
