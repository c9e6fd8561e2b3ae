"""Expected-latency regularizer for DARTS cells: lambda * |LAT / T - 1|.

LAT is the op-weight-weighted sum of per-op latencies over every edge of every
*deployed* cell (``tfnas.latency.darts_bundle`` defines the deployment shape
and keys), plus the fixed parts. It is precomputed into two tensors shaped like
the alphas, so each step costs one multiply-add. Each deployed node keeps two
of its incoming edges, so by default an edge's latency is scaled by
``2 / number of incoming edges`` (``kept_edges: false`` gives the plain sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from profilers.errors import ProfilerError
from tfnas.errors import ConfigError
from tfnas.latency.darts_bundle import DeployShape, deploy_positions, fixed_keys, op_key
from tfnas.latency.darts_predict import LatencyLookup, genotype_latency
from tfnas.search.darts.supernet import ArchWeights, DartsSupernet
from tfnas.spaces.darts import CellSpace, node_edge_slices
from tfnas.spaces.darts_genotypes import Genotype

__all__ = ["LatencyLoss", "build_latency_regularizer", "expected_latency", "genotype_latency", "latency_tensors"]


def latency_tensors(
    space: CellSpace, shape: DeployShape, table: LatencyLookup, multi_level: bool, kept_edges: bool = True
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(L_normal ``[sets, E, K]``, L_reduce ``[sets, E, K]``, fixed ms)."""
    sets = (3, 2) if multi_level else (1, 1)
    K = space.num_ops
    L = {"normal": torch.zeros(sets[0], len(space.normal), K), "reduce": torch.zeros(sets[1], len(space.reduce), K)}
    scale = torch.ones(len(space.normal))
    if kept_edges:
        for sl in node_edge_slices():
            scale[sl] = 2.0 / (sl.stop - sl.start)
    missing = []
    for pos in deploy_positions(shape):
        kind = "reduce" if pos.reduction else "normal"
        aset = pos.alpha_set if multi_level else 0
        for e, ops in enumerate(space.ops(kind)):
            for k, op in enumerate(ops):
                if op in ("none", "noise"):
                    continue
                key = op_key(op, pos.C, pos.edge_stride(e), pos.edge_resolution(e))
                try:
                    L[kind][aset, e, k] += float(table.latency(key, None)) * float(scale[e])
                except (KeyError, ProfilerError) as err:
                    missing.append(f"{key} ({err.__class__.__name__})")
    fixed = 0.0
    for key, _, _ in fixed_keys(shape):
        try:
            fixed += float(table.latency(key, None))
        except (KeyError, ProfilerError) as err:
            missing.append(f"{key} ({err.__class__.__name__})")
    if missing:
        raise ConfigError(
            f"latency table lacks {len(missing)} DARTS keys for this space/deploy shape, e.g. {missing[:3]};"
            " profile a bundle from `tfnas darts bundle` with the same deploy shape"
        )
    return L["normal"], L["reduce"], fixed


def expected_latency(
    weights: ArchWeights, L_normal: torch.Tensor, L_reduce: torch.Tensor, fixed: float
) -> torch.Tensor:
    return (weights["normal"] * L_normal).sum() + (weights["reduce"] * L_reduce).sum() + fixed


@dataclass
class LatencyLoss:
    L_normal: torch.Tensor
    L_reduce: torch.Tensor
    fixed_ms: float
    target_ms: float
    lam: float = 0.1
    name: str = "latency"
    table: LatencyLookup | None = None
    shape: DeployShape | None = None

    def predict_genotype(self, genotype: Genotype) -> float | None:
        if self.table is None or self.shape is None:
            return None
        return genotype_latency(genotype, self.shape, self.table)

    def expected(self, weights: ArchWeights) -> torch.Tensor:
        return expected_latency(weights, self.L_normal, self.L_reduce, self.fixed_ms)

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor:
        return self.lam * (self.expected(weights) / self.target_ms - 1.0).abs()


def build_latency_regularizer(
    cfg: dict[str, Any], model: DartsSupernet, table: LatencyLookup | None = None
) -> LatencyLoss:
    """``cfg``: ``{table: LUT path, target_ms, lambda, deploy: {...}, kept_edges}``."""
    if "target_ms" not in cfg:
        raise ConfigError("latency: needs target_ms")
    if table is None:
        if not cfg.get("table"):
            raise ConfigError("latency: needs 'table' (a LUT JSON measured from a DARTS bundle)")
        from profilers.lut import LatencyTable
        from tfnas.latency.table import profiler_errors
        from tfnas.resources import find_table

        with profiler_errors():
            table = LatencyTable.load(find_table(cfg["table"]))
    shape = DeployShape.from_dict(cfg.get("deploy"))
    Ln, Lr, fixed = latency_tensors(model.space, shape, table, model.cfg.multi_level, bool(cfg.get("kept_edges", True)))
    return LatencyLoss(Ln, Lr, fixed, float(cfg["target_ms"]), float(cfg.get("lambda", 0.1)), table=table, shape=shape)
