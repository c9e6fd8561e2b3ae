"""The calibration of a latency table: the fit from summed op latencies to whole-network latencies; no family.

Summed op latencies differ from a whole network's: per-op graphs pay their own
input/output layout reorders and are timed with their weights hot in cache,
while a network streams every layer's weights through the caches on each
inference. We fit ``measured ~ scale * sum + ms_per_mweight * Mweights + offset``
by least squares and store it in the table, where a family's prediction applies it
(``mbv2.predict``, ``darts.latency``; the networks are sampled and timed by
``mbv2.calibrate`` and ``darts.calibrate``).

On ONNX Runtime CPU (2-core EPYC, 1 thread) the weight term took the
leave-one-out error over 180 random networks from 2.7% (affine in the sum) to
2.1%, near the noise of the measurements themselves; its fitted cost, 0.1-0.2 ms
per million fp32 weights (20-40 GB/s), is a plausible last-level-cache stream
(benchmarks/latency/README.md). Weights count at the width the runtime
allocates (``WidthGrid.runtime_width``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profilers.lut import LatencyTable
from tfnas.latency.table import Lookup


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


def fit_affine(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(scale, offset) of measured = scale * predicted + offset, least squares on relative errors.

    Relative (each residual divided by its measurement): the target is a percentage
    error, and a few large networks must not dominate the fit. The offset is a fixed
    whole-network overhead, so it must not be negative: a negative fit (noise, or a
    missing term) would make the fastest architectures absurdly fast when
    extrapolated. In that case, and for a degenerate sample, we fit a pure scale.
    """
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    r = p / m
    pure_scale = (float(np.sum(r) / np.sum(r * r)), 0.0)
    if len(p) < 2 or np.ptp(p) == 0:
        return pure_scale
    design = np.stack([r, 1.0 / m], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
    if scale <= 0 or offset < 0:
        return pure_scale
    return float(scale), float(offset)


def fit_calibration(predicted: Sequence[float], mweights: Sequence[float], measured: Sequence[float]) -> Calibration:
    """``Calibration`` with the weight-streaming term, least squares on relative errors.

    The streaming cost must not be negative (it would reward wider layers), nor the
    offset (see ``fit_affine``); when the full fit breaks either, or the sample is
    too small to separate the terms, the plain affine fit is used.
    """
    p, w, m = (np.asarray(v, float) for v in (predicted, mweights, measured))
    if len(p) >= 8 and np.ptp(w) > 0:
        design = np.stack([p / m, w / m, 1.0 / m], axis=1)
        (scale, k, offset), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
        if scale > 0 and k >= 0 and offset >= 0:
            return Calibration(float(scale), float(offset), float(k))
        if k >= 0:  # only the offset came out negative: refit without it
            (scale, k), *_ = np.linalg.lstsq(design[:, :2], np.ones_like(m), rcond=None)
            if scale > 0 and k >= 0:
                return Calibration(float(scale), 0.0, float(k))
    scale, offset = fit_affine(p, m)
    return Calibration(scale, offset, 0.0)


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE, worst and mean signed error (bias, %: positive = predictions too high)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m * 100.0
    return {"mape": float(np.mean(np.abs(rel))), "worst": float(np.max(np.abs(rel))), "bias": float(np.mean(rel))}
