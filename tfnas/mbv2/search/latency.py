"""The differentiable latency term of TF-NAS, at the deployment shape of a latency table.

Expected latency of the supernet = fixed parts (stem, first block, head)
+ per stage: sum over sink points k of softmax(beta)_k * (cumulative latency of
layers 1..k), where a layer's latency is the op-weight mix of its ops'
calibrated costs at their *current* widths. The table's calibration (scale,
weight streaming, offset; see ``tfnas.latency.calibrate.Calibration``) is folded
into every layer's cost, so the loss targets measured end-to-end latency, not
the op sum.

Geometry comes from ``space.layers(lut_resolution)``: the supernet may train at
a proxy resolution, the latency term always describes the deployed network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from profilers.lut import LatencyTable
from tfnas.errors import LatencyTableError
from tfnas.latency.calibrate import Calibration, table_calibration
from tfnas.latency.table import Lookup, as_lookup
from tfnas.mbv2.arch import Architecture, LayerChoice
from tfnas.mbv2.keys import fixed_signatures, layer_key, layer_weights
from tfnas.mbv2.space import MBV2Space


class LatencyModel:
    """Table latencies of every (layer, op, width) of a space, and the expected latency of a supernet state."""

    def __init__(
        self,
        space: MBV2Space,
        table: LatencyTable | Lookup,
        resolution: int | None = None,
        calibrated: bool = True,
        width_align: int = 1,
    ):
        self.space = space
        self.lookup = as_lookup(table)
        fp_res = self.lookup.table.fingerprint.get("resolution")
        self.resolution = int(resolution or fp_res or space.resolution)
        self.geometry = space.layers(self.resolution)
        self.op_names = list(space.ops)
        self.keys = [[layer_key(space, g, op) for op in self.op_names] for g in self.geometry]
        fixed = fixed_signatures(space, self.resolution)
        try:
            self.fixed_ms = sum(self.lookup(sig.key, None) for sig in fixed.values())
            for g, row in zip(self.geometry, self.keys):
                for op, key in zip(self.op_names, row):
                    lo, hi = space.width_bounds(op, g.in_ch)
                    self.lookup(key, lo), self.lookup(key, hi)
        except LatencyTableError as e:
            raise LatencyTableError(
                f"latency table {self.lookup.table.source} cannot serve space {space.name!r} at resolution"
                f" {self.resolution}: {e}"
            ) from None
        self.calibration = table_calibration(self.lookup) if calibrated else None
        self.cal = Calibration.of(self.calibration)
        self.fixed_cost = self.cal.fixed(self.fixed_ms)
        self._costs: dict[tuple[int, int, int], float] = {}
        self._allowed: dict[tuple[int, int], tuple[int, ...]] = {}
        self._ranges: dict[tuple[int, int], tuple[float, float]] = {}
        self.width_align = max(1, int(width_align))
        self.stage_slices = space.stage_slices()
        self.min_depths = space.min_depths()

    # ---- single lookups ---------------------------------------------------------------------------------
    def op_ms(self, layer: int, op: int, width: int) -> float:
        """Raw table latency of one op at one width."""
        return self.lookup(self.keys[layer][op], int(width))

    def op_cost(self, layer: int, op: int, width: int) -> float:
        """Calibrated cost of one op at one width: what it adds to the network's predicted latency.

        Memoised: the width fitting of ``elastic`` asks for the same few thousand costs over and over.
        """
        key = (layer, op, int(width))
        cost = self._costs.get(key)
        if cost is None:
            w = key[2]
            runtime_w = self.lookup.grid.runtime_width(w)
            weights = layer_weights(self.space, self.geometry[layer], self.op_names[op], runtime_w)
            cost = self._costs[key] = self.cal.layer(self.op_ms(layer, op, w), weights)
        return cost

    def allowed_widths(self, layer: int, op: int) -> tuple[int, ...]:
        """Widths a search may pick: multiples of ``width_align`` within the op's bounds (and the bounds)."""
        ws = self._allowed.get((layer, op))
        if ws is None:
            lo, hi = self.space.width_bounds(self.op_names[op], self.geometry[layer].in_ch)
            ws = tuple(w for w in range(lo, hi + 1) if w % self.width_align == 0) or (lo, hi)
            self._allowed[(layer, op)] = ws
        return ws

    def cost_range(self, layer: int, op: int) -> tuple[float, float]:
        """(cheapest, dearest) calibrated cost of an op over its allowed widths."""
        r = self._ranges.get((layer, op))
        if r is None:
            costs = [self.op_cost(layer, op, w) for w in self.allowed_widths(layer, op)]
            r = self._ranges[(layer, op)] = (min(costs), max(costs))
        return r

    # ---- expected latency (differentiable) ---------------------------------------------------------------
    def op_table(self, widths: Sequence[Sequence[int]]) -> torch.Tensor:
        """[layers, ops] calibrated costs of every op at its current width."""
        return torch.tensor(
            [[self.op_cost(i, j, w) for j, w in enumerate(row)] for i, row in enumerate(widths)], dtype=torch.float32
        )

    def expected(
        self, op_weights: torch.Tensor, sink_probs: Sequence[torch.Tensor], op_table: torch.Tensor
    ) -> torch.Tensor:
        """Calibrated expected latency (ms); differentiable in ``op_weights`` and ``sink_probs``."""
        layer_ms = (op_weights * op_table.to(op_weights.device)).sum(-1)
        total = layer_ms.new_tensor(self.fixed_cost)
        for s, (a, b) in enumerate(self.stage_slices):
            cum = torch.cumsum(layer_ms[a:b], 0)
            if self.min_depths[s] == 0:
                cum = torch.cat([cum.new_zeros(1), cum])
            total = total + (sink_probs[s] * cum).sum()
        return total

    # ---- discrete architectures ---------------------------------------------------------------------------
    def arch_ms(
        self, ops: Sequence[int], widths: Sequence[int], depths: Sequence[int], calibrated: bool = True
    ) -> float:
        """Latency of a discrete choice: op and width per layer, depth per stage."""
        cost = self.op_cost if calibrated else self.op_ms
        total = self.fixed_cost if calibrated else self.fixed_ms
        for s, (a, _) in enumerate(self.stage_slices):
            for i in range(a, a + depths[s]):
                total += cost(i, ops[i], widths[i])
        return total

    def to_arch(
        self, ops: Sequence[int], widths: Sequence[int], depths: Sequence[int], meta: dict | None = None
    ) -> Architecture:
        stages: list[list[LayerChoice]] = [[] for _ in self.space.stages]
        for g, o, w in zip(self.geometry, ops, widths):
            stages[g.stage].append(LayerChoice(self.op_names[o], int(w)))
        return Architecture(self.space, stages, list(depths), self.resolution, dict(meta or {})).validate()

    def feasible_range(self, op_mask: torch.Tensor | None = None) -> tuple[float, float]:
        """(fastest, slowest) calibrated latency over the architectures this search can reach."""
        ext = []
        for i in range(len(self.geometry)):
            ranges = [
                self.cost_range(i, j) for j in range(len(self.op_names)) if op_mask is None or bool(op_mask[i, j])
            ]
            ext.append((min(r[0] for r in ranges), max(r[1] for r in ranges)))
        fast = slow = self.fixed_cost
        for s, (a, b) in enumerate(self.stage_slices):
            depths = range(self.min_depths[s], b - a + 1)
            fast += min(sum(e[0] for e in ext[a : a + d]) for d in depths)
            slow += max(sum(e[1] for e in ext[a : a + d]) for d in depths)
        return fast, slow
