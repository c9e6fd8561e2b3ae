"""Latency of a derived DARTS network from a table of its cell ops, calibrated on measured eval networks.

The table holds every op at every deployed edge plus the fixed parts (stem, cell
preprocessing, classifier). A whole network also pays for what no per-op graph
contains: node sums, concatenations, the graph's own overhead, and streaming all of
its weights through the caches. As for the MBV2 tables (``tfnas.latency.calibrate``),
``measured ~ scale * sum + ms_per_mweight * Mparams + offset`` is fitted on random
genotypes' eval networks timed end to end, stored in the table, and applied here.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from profilers.lut import LatencyTable
from profilers.timing import TimingProtocol
from tfnas.latency.calibrate import error_stats, fit_calibration
from tfnas.latency.darts_bundle import DeployShape, deploy_positions, fixed_keys, op_key
from tfnas.latency.predict import Calibration
from tfnas.spaces.darts import NUM_INPUT_NODES, NUM_NODES, CellSpace, node_edge_slices
from tfnas.spaces.darts_genotypes import CellGenotype, Genotype

SKIPPED_OPS = ("none", "noise")  # no work worth a table entry


class LatencyLookup(Protocol):
    def latency(self, key: str, width: int | None = None) -> float: ...


def genotype_sum(genotype: Genotype, shape: DeployShape, table: LatencyLookup) -> float:
    """Sum (ms) of the table latencies of the derived network's kept edges at every deployed cell + fixed parts."""

    def outputs(reduction: bool, alpha_set: int) -> int:
        cell = genotype.reduce_cell(alpha_set) if reduction else genotype.normal_cell(alpha_set)
        return len(cell.concat)

    total = sum(float(table.latency(key, None)) for key, _, _ in fixed_keys(shape, outputs))
    for pos in deploy_positions(shape, outputs):
        cell = genotype.reduce_cell(pos.alpha_set) if pos.reduction else genotype.normal_cell(pos.alpha_set)
        for op, src in cell.edges:
            if op not in SKIPPED_OPS:
                total += float(table.latency(op_key(op, pos.C, pos.src_stride(src), pos.src_resolution(src)), None))
    return total


def _calibration(table: Any) -> Calibration | None:
    cal = getattr(table, "calibration", None)
    if not cal:
        return None
    return Calibration(float(cal["scale"]), float(cal["offset_ms"]), float(cal.get("ms_per_mweight", 0.0)))


def genotype_mparams(genotype: Genotype, shape: DeployShape) -> float:
    """Millions of parameters of the deployed eval network (no auxiliary head): the weights it streams."""
    from tfnas.models.darts_eval import count_params_without_aux

    return count_params_without_aux(eval_net(genotype, shape)) / 1e6


def genotype_latency(genotype: Genotype, shape: DeployShape, table: LatencyLookup, calibrated: bool = True) -> float:
    """Predicted latency (ms) of the derived network: the table sum, calibrated when the table has a fit."""
    raw = genotype_sum(genotype, shape, table)
    cal = _calibration(table) if calibrated else None
    if cal is None:
        return raw
    return cal.total(raw, genotype_mparams(genotype, shape) if cal.ms_per_mweight else 0.0)


def random_genotype(space: CellSpace, rng: random.Random) -> Genotype:
    """A DARTS genotype (two distinct inputs per node, ops from each edge's candidates, never ``none``)."""

    def cell(kind: str) -> CellGenotype:
        edges = []
        for node, sl in enumerate(node_edge_slices()):
            for src in sorted(rng.sample(range(NUM_INPUT_NODES + node), 2)):
                ops = [op for op in space.ops(kind)[sl.start + src] if op not in SKIPPED_OPS]
                edges.append((rng.choice(ops), src))
        return CellGenotype(tuple(edges), tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES)))

    return Genotype((cell("normal"),), (cell("reduce"),))


def eval_net(genotype: Genotype, shape: DeployShape):  # noqa: ANN201 - DartsEvalNet, imported lazily
    """The eval network at the deployment shape, in inference form (no auxiliary head, no drop path)."""
    from tfnas.models.darts_eval import build_eval_net

    net = build_eval_net(
        genotype, "cifar", C=shape.C, num_cells=shape.num_cells, num_classes=shape.num_classes,
        in_channels=shape.in_channels, stem_multiplier=shape.stem_multiplier, auxiliary=False, drop_path_prob=0.0,
    )  # fmt: skip
    return net.eval()


def measure_genotypes(
    genotypes: list[Genotype],
    shape: DeployShape,
    threads: int = 1,
    rounds: int = 3,
    seed: int = 0,
    protocol: TimingProtocol | None = None,
    progress: bool = False,
) -> list[float]:
    """End-to-end latency (ms, the protocol's statistic, median over interleaved rounds) of each eval network."""
    from tfnas.export.onnx import export_onnx
    from tfnas.latency.measure import DEFAULT_PROTOCOL, interleave, onnx_timer, round_latency

    in_shape = (shape.batch, shape.in_channels, shape.resolution, shape.resolution)
    with tempfile.TemporaryDirectory(prefix="tfnas-darts-measure-") as tmp:
        timers = []
        for i, g in enumerate(genotypes):
            path = export_onnx(eval_net(g, shape), Path(tmp) / f"{i}.onnx", in_shape)
            timers.append(onnx_timer(path, in_shape, "ort", threads))
        runs = interleave(timers, protocol or DEFAULT_PROTOCOL, rounds, seed, progress)
    return [round_latency(r) for r in runs]


def calibrate_darts(
    table: LatencyTable,
    space: CellSpace,
    shape: DeployShape,
    n: int = 24,
    seed: int = 0,
    threads: int = 1,
    rounds: int = 3,
    measured: list[float] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit ``table.calibration`` on ``n`` random genotypes' eval networks timed here; return it.

    ``measured`` replaces the timing (tests). The fit it replaces is kept in ``meta.calibration_history``.
    """
    from tfnas.latency.measure import protocol_for

    rng = random.Random(seed)
    genotypes = [random_genotype(space, rng) for _ in range(n)]
    t0 = time.perf_counter()
    sums = [genotype_sum(g, shape, table) for g in genotypes]
    mparams = [genotype_mparams(g, shape) for g in genotypes]
    if measured is None:
        measured = measure_genotypes(genotypes, shape, threads, rounds, seed, protocol_for(table.protocol), progress)
    fit = fit_calibration(sums, mparams, measured)
    after = [fit.total(s, w) for s, w in zip(sums, mparams)]
    cal = {
        "scale": fit.scale,
        "offset_ms": fit.offset_ms,
        "ms_per_mweight": fit.ms_per_mweight,
        "samples": n,
        "mape_before": error_stats(sums, measured)["mape"],
        "mape_after": error_stats(after, measured)["mape"],
        "method": f"least squares on relative errors over {n} random genotypes (seed {seed}) of space {space.name},"
        f" eval nets at {shape}, {rounds} interleaved rounds, {threads} thread(s); Mweights = Mparams",
    }
    table.replace_calibration(cal)
    table.meta["calibration_detail"] = {
        "sum_ms": [round(v, 4) for v in sums],
        "mparams": [round(v, 4) for v in mparams],
        "measured_ms": [round(v, 4) for v in measured],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return cal
