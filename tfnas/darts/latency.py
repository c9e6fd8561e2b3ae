"""Latency of DARTS networks at a deployment shape: table keys, the bundle, prediction and the search's term.

The search may train a small proxy supernet (8 cells, C=16), but the latency term must
describe the network that will be deployed (e.g. CIFAR C=36, 20 cells, batch 1). Its cells
come from the one ``cell_plan`` the supernet and the evaluation network are built from; every
(op, C, stride, H) an edge meets becomes one key, measured once by the profilers. Keys are
readable: ``darts/sep_conv_3x3/c36/s1/h32``. The fixed parts (stem, cell preprocessing,
classifier) are built by ``tfnas.darts.network`` and get keys too, so the total is a
whole-network estimate; a fit on measured evaluation networks (``tfnas.darts.calibrate``)
adds what no per-op graph contains.

The search's term is ``lambda * |LAT / T - 1|``, LAT the op-weight-weighted sum over every edge
of every deployed cell plus the fixed parts, precomputed into two tensors shaped like the
alphas. Each deployed node keeps two of its incoming edges, so by default an edge's latency is
scaled by ``2 / number of incoming edges`` (``kept_edges: false`` gives the plain sum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from tfnas.config.loader import validate
from tfnas.darts.config import DartsLatency
from tfnas.darts.network import Head, Stem, build_eval_net, count_params_without_aux, preprocess
from tfnas.darts.ops import build_op
from tfnas.darts.shapes import DeployShape
from tfnas.darts.space import NUM_NODES, CellPlan, CellSpace, Genotype, cell_plan, node_edge_slices
from tfnas.darts.supernet import ArchWeights, DartsSupernet
from tfnas.errors import ConfigError
from tfnas.latency.bundle import BundleGraph, write_graphs
from tfnas.latency.calibrate import Calibration
from tfnas.latency.table import open_table
from tfnas_base.errors import UserError

Outputs = Callable[[bool, int], int]  # (reduction, alpha set) -> nodes a cell concatenates
SKIPPED_OPS = ("none", "noise")  # no work worth a table entry


class LatencyLookup(Protocol):
    def latency(self, key: str, width: int | None = None) -> float: ...


# ---- keys -------------------------------------------------------------------------------------------------
def deploy_positions(shape: DeployShape, outputs: Outputs | None = None) -> list[CellPlan]:
    """The deployed network's cells. ``outputs``: a genotype's concatenation sizes (Fair DARTS cells may
    concatenate fewer than 4 nodes, which narrows the next cells' preprocessing); default all nodes."""
    return cell_plan(shape.C, shape.num_cells, shape.stem_multiplier, shape.resolution, outputs=outputs)


def op_key(op: str, C: int, stride: int, H: int) -> str:
    return f"darts/{op}/c{C}/s{stride}/h{H}"


def fixed_parts(shape: DeployShape, outputs: Outputs | None = None) -> list[BundleGraph]:
    """The parts every architecture pays for (stem, preprocessing, head), as the networks build them;
    the preprocessing and head widths follow the cells' concatenation sizes (``outputs``)."""
    b, res = shape.batch, shape.resolution
    c_stem = shape.stem_multiplier * shape.C
    out = [BundleGraph(f"darts/stem/cin{shape.in_channels}/c{c_stem}/h{res}", None,
                       lambda: Stem(shape, shape.in_channels).body, (b, shape.in_channels, res, res))]  # fmt: skip
    plan = deploy_positions(shape, outputs)
    for pos in plan:
        h0 = pos.H_in * 2 if pos.reduction_prev else pos.H_in
        kind = "pre_fr" if pos.reduction_prev else "pre_rcb"
        out.append(BundleGraph(f"darts/{kind}/cin{pos.C_pp}/c{pos.C}/h{h0}", None,
                               lambda pos=pos: preprocess(pos)[0], (b, pos.C_pp, h0, h0)))  # fmt: skip
        out.append(BundleGraph(f"darts/pre_rcb/cin{pos.C_p}/c{pos.C}/h{pos.H_in}", None,
                               lambda pos=pos: preprocess(pos)[1], (b, pos.C_p, pos.H_in, pos.H_in)))  # fmt: skip
    last = plan[-1]
    H, c_last = last.H_in // 2 if last.reduction else last.H_in, last.C_out
    out.append(BundleGraph(f"darts/head/c{c_last}/h{H}/k{shape.num_classes}", None,
                           lambda: Head(c_last, shape.num_classes), (b, c_last, H, H)))  # fmt: skip
    return list({g.key: g for g in reversed(out)}.values())[::-1]  # first occurrence of each key, in order


def op_entries(space: CellSpace, shape: DeployShape) -> dict[str, tuple[str, int, int, int]]:
    """key -> (op, C, stride, H) for every candidate op at every deployed edge (``none`` excluded)."""
    keys: dict[str, tuple[str, int, int, int]] = {}
    for pos in deploy_positions(shape):
        for e, ops in enumerate(space.ops("reduce" if pos.reduction else "normal")):
            s, h = pos.edge_stride(e), pos.edge_resolution(e)
            for op in ops:
                if op != "none":
                    keys.setdefault(op_key(op, pos.C, s, h), (op, pos.C, s, h))
    return keys


def write_darts_bundle(space: CellSpace, shape: DeployShape, out_dir: str | Path, progress: bool = False) -> Path:
    """Every cell op at every deployed edge, and the fixed parts for every concatenation size a derived
    cell may have (Fair DARTS keeps 0-2 inputs per node), as a profiling bundle."""
    graphs = [
        BundleGraph(key, None, lambda op=op, C=C, s=s: build_op(op, C, s, affine=True), (shape.batch, C, h, h))
        for key, (op, C, s, h) in sorted(op_entries(space, shape).items())
        if op not in SKIPPED_OPS  # noise: a random output, no architecture-dependent work worth timing
    ]
    fixed = {g.key: g for k in range(1, NUM_NODES + 1) for g in fixed_parts(shape, lambda r, a, k=k: k)}
    meta = {"deploy": shape.to_dict(), "space_ops": {"normal": space.normal, "reduce": space.reduce}}
    return write_graphs(out_dir, graphs + list(fixed.values()), f"darts-{space.name}", shape.batch,
                        shape.resolution, meta, progress)  # fmt: skip


# ---- prediction -------------------------------------------------------------------------------------------
def genotype_sum(genotype: Genotype, shape: DeployShape, table: LatencyLookup) -> float:
    """Sum (ms) of the table latencies of the derived network's kept edges at every deployed cell + fixed parts."""
    total = sum(float(table.latency(g.key, None)) for g in fixed_parts(shape, genotype.outputs))
    for pos in deploy_positions(shape, genotype.outputs):
        for op, src in genotype.cell(pos.reduction, pos.alpha_set).edges:
            if op not in SKIPPED_OPS:
                total += float(table.latency(op_key(op, pos.C, pos.src_stride(src), pos.src_resolution(src)), None))
    return total


def genotype_mparams(genotype: Genotype, shape: DeployShape) -> float:
    """Millions of parameters of the deployed eval network (no auxiliary head): the weights it streams."""
    return count_params_without_aux(deployed_net(genotype, shape)) / 1e6


def genotype_latency(genotype: Genotype, shape: DeployShape, table: LatencyLookup, calibrated: bool = True) -> float:
    """Predicted latency (ms) of the derived network: the table sum, calibrated when the table has a fit."""
    raw = genotype_sum(genotype, shape, table)
    cal = getattr(table, "calibration", None) if calibrated else None
    if not cal:
        return raw
    fit = Calibration.of(cal)
    return fit.total(raw, genotype_mparams(genotype, shape) if fit.ms_per_mweight else 0.0)


def deployed_net(genotype: Genotype, shape: DeployShape) -> nn.Module:
    """The evaluation network at the deployment shape, in inference form (no auxiliary head, no drop path)."""
    net = build_eval_net(genotype, "cifar", shape.num_classes, shape.in_channels, C=shape.C,
                         num_cells=shape.num_cells, stem_multiplier=shape.stem_multiplier, auxiliary=False,
                         drop_path_prob=0.0)  # fmt: skip
    return net.eval()


# ---- the search's latency term ------------------------------------------------------------------------------
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

    def lookup(key: str) -> float:
        try:
            return float(table.latency(key, None))
        except (KeyError, UserError) as err:
            missing.append(f"{key} ({err.__class__.__name__})")
            return 0.0

    for pos in deploy_positions(shape):
        kind = "reduce" if pos.reduction else "normal"
        aset = pos.alpha_set if multi_level else 0
        for e, ops in enumerate(space.ops(kind)):
            for k, op in enumerate(ops):
                if op not in SKIPPED_OPS:
                    L[kind][aset, e, k] += lookup(
                        op_key(op, pos.C, pos.edge_stride(e), pos.edge_resolution(e))
                    ) * float(scale[e])
    fixed = sum(lookup(g.key) for g in fixed_parts(shape))
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
    cfg: DartsLatency | dict, model: DartsSupernet, table: LatencyLookup | None = None
) -> LatencyLoss:
    """``cfg``: a config's ``latency`` section (``tfnas.darts.config.DartsLatency``); ``table`` replaces its file."""
    cfg = cfg if isinstance(cfg, DartsLatency) else validate(DartsLatency, cfg, "<DARTS latency>", ("latency",))
    # opened unchecked: the keys are checked below, against this deploy shape (``latency_tensors``)
    table = table if table is not None else open_table(cfg.table)
    Ln, Lr, fixed = latency_tensors(model.space, cfg.deploy, table, model.structure.multi_level, cfg.kept_edges)
    return LatencyLoss(Ln, Lr, fixed, cfg.target_ms, cfg.lam, table=table, shape=cfg.deploy)
