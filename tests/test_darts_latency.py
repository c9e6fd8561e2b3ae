"""Latency-aware cells: deployment positions, expected latency, the latency loss and the bundle."""

from __future__ import annotations

import pytest
import torch

from tfnas.darts.latency import (
    LatencyLoss,
    build_latency_regularizer,
    deploy_positions,
    fixed_parts,
    latency_tensors,
    op_entries,
    write_darts_bundle,
)
from tfnas.darts.shapes import DeployShape, SupernetSection
from tfnas.darts.space import load_cell_space
from tfnas.darts.supernet import DartsSupernet

COST = {"sep_conv_3x3": 2.0, "sep_conv_5x5": 3.0, "dil_conv_3x3": 1.5, "dil_conv_5x5": 2.5,
        "max_pool_3x3": 0.2, "avg_pool_3x3": 0.2, "skip_connect": 0.05}  # fmt: skip


class FakeTable:
    """Per-op cost times C*H*H/1000, stride 2 halves it; fixed parts cost 1 ms each."""

    def __init__(self):
        self.asked: list[str] = []

    def latency(self, key: str, width=None) -> float:
        self.asked.append(key)
        parts = key.split("/")
        if parts[1] in COST:
            C, s, H = int(parts[2][1:]), int(parts[3][1:]), int(parts[4][1:])
            return COST[parts[1]] * C * H * H / 1000 / s
        return 1.0


def test_deploy_positions_cifar():
    pos = deploy_positions(DeployShape())
    assert len(pos) == 20 and [p.index for p in pos if p.reduction] == [6, 13]
    assert pos[0].C == 36 and pos[6].C == 72 and pos[13].C == 144 and pos[-1].C == 144
    assert pos[6].H_in == 32 and pos[7].H_in == 16 and pos[7].reduction_prev
    assert pos[6].edge_stride(2) == 2 and pos[6].edge_stride(4) == 1 and pos[6].edge_resolution(4) == 16
    assert [p.alpha_set for p in pos if not p.reduction][:7] == [0] * 6 + [1]


def test_expected_latency_of_one_hot_weights_is_the_sum_of_chosen_ops():
    space = load_cell_space("s0")
    shape = DeployShape(C=8, num_cells=5, resolution=16)
    Ln, Lr, fixed = latency_tensors(space, shape, FakeTable(), multi_level=False, kept_edges=False)
    assert Ln.shape == (1, 14, 8) and fixed == len(fixed_parts(shape))
    k = space.normal[0].index("sep_conv_3x3")
    w = {"normal": torch.zeros(1, 14, 8), "reduce": torch.zeros(1, 14, 8)}
    w["normal"][..., k] = 1.0
    loss = LatencyLoss(Ln, Lr, fixed, target_ms=1.0)
    # 3 normal cells (C=8,8,16... ) x 14 edges of sep_conv_3x3 + fixed parts
    expected = fixed + sum(
        14 * COST["sep_conv_3x3"] * p.C * p.H_in * p.H_in / 1000 for p in deploy_positions(shape) if not p.reduction
    )
    assert torch.isclose(loss.expected(w), torch.tensor(expected))
    # 'none' costs nothing
    assert float(Ln[..., space.normal[0].index("none")].abs().sum()) == 0.0


def test_latency_loss_pulls_towards_cheap_ops():
    torch.manual_seed(0)
    model = DartsSupernet(load_cell_space("s0"), SupernetSection(C=4, num_cells=5))
    cfg = {"table": "fake.json", "target_ms": 1.0, "lambda": 1.0, "deploy": {"C": 8, "num_cells": 5, "resolution": 16}}
    reg = build_latency_regularizer(cfg, model, table=FakeTable())
    opt = torch.optim.Adam(model.arch_parameters(), lr=0.1)
    lat0 = float(reg.expected(model.arch_weights()).detach())
    for _ in range(20):
        opt.zero_grad()
        reg(model, model.arch_weights(), 0.0).backward()
        opt.step()
    w = model.arch_weights()
    assert float(reg.expected(w).detach()) < 0.7 * lat0
    ops = model.space.normal[0]
    assert w["normal"][0, :, ops.index("sep_conv_5x5")].mean() < w["normal"][0, :, ops.index("none")].mean()


def test_missing_keys_are_reported():
    from tfnas.errors import ConfigError

    class Empty:
        def latency(self, key, width=None):
            raise KeyError(key)

    with pytest.raises(ConfigError, match="lacks"):
        latency_tensors(load_cell_space("s2"), DeployShape(C=4, num_cells=3, resolution=8), Empty(), False)


def test_bundle_manifest_is_readable_by_profilers(tmp_path):
    from profilers.bundle import load_manifest

    space = load_cell_space("s2")
    shape = DeployShape(C=4, num_cells=3, resolution=8)
    write_darts_bundle(space, shape, tmp_path)
    m = load_manifest(tmp_path)
    keys = {e.key for e in m.entries}
    assert set(op_entries(space, shape)) <= keys
    assert all(e.width is None and e.input_shape[0] == 1 for e in m.entries)


def test_bundle_profiles_into_a_table_the_loss_accepts(tmp_path):
    from profilers.lut import LatencyTable
    from profilers.run import profile_bundle
    from profilers.timing import TimingProtocol

    space = load_cell_space("s2")
    shape = DeployShape(C=4, num_cells=3, resolution=8)
    write_darts_bundle(space, shape, tmp_path / "b")
    proto = TimingProtocol(warmup=1, min_repeats=5, max_repeats=8, max_time_s=0.2)
    profile_bundle(tmp_path / "b", tmp_path / "lut.json", threads=1, protocol=proto, progress=False)
    model = DartsSupernet(space, SupernetSection(C=4, num_cells=3))
    cfg = {"table": str(tmp_path / "lut.json"), "target_ms": 1.0, "deploy": {"C": 4, "num_cells": 3, "resolution": 8}}
    reg = build_latency_regularizer(cfg, model)
    assert float(reg.expected(model.arch_weights()).detach()) > 0
    assert isinstance(LatencyTable.load(tmp_path / "lut.json"), LatencyTable)


def test_genotype_latency_counts_kept_edges():
    from tfnas.darts.latency import genotype_latency
    from tfnas.darts.space import CellGenotype, Genotype

    shape = DeployShape(C=8, num_cells=5, resolution=16)
    normal = CellGenotype(tuple(("sep_conv_3x3", i % 2) for i in range(8)))
    reduce = CellGenotype(tuple(("max_pool_3x3", i % 2) for i in range(8)))
    table = FakeTable()
    got = genotype_latency(Genotype((normal,), (reduce,)), shape, table)
    fixed = len(fixed_parts(shape))
    normal_ms = sum(
        8 * COST["sep_conv_3x3"] * p.C * p.H_in**2 / 1000 for p in deploy_positions(shape) if not p.reduction
    )
    reduce_ms = sum(
        8 * COST["max_pool_3x3"] * p.C * p.H_in**2 / 1000 / 2 for p in deploy_positions(shape) if p.reduction
    )
    assert abs(got - (fixed + normal_ms + reduce_ms)) < 1e-9


def test_darts_calibration_fits_measured_eval_nets_and_prediction_applies_it():
    """A table that under-predicts by a constant factor plus an overhead is corrected by the fit."""
    import random

    from tfnas.darts.calibrate import calibrate_darts
    from tfnas.darts.latency import genotype_latency, genotype_sum
    from tfnas.darts.space import random_genotype

    space = load_cell_space("s0")
    shape = DeployShape(C=4, num_cells=3, resolution=8)

    class Table:
        calibration = None
        meta: dict = {}

        def latency(self, key, width=None):
            return 0.01 + 0.001 * len(key)

        def replace_calibration(self, cal):  # LatencyTable's: the fit is installed
            self.calibration = cal

    table = Table()
    rng = random.Random(0)
    genos = [random_genotype(space, rng) for _ in range(10)]
    assert all(op != "none" for g in genos for op, _ in g.normal[0].edges)
    truth = [1.3 * genotype_sum(g, shape, table) + 0.2 for g in genos]
    cal = calibrate_darts(table, space, shape, n=10, seed=0, measured=truth)
    assert cal["mape_after"] < 0.5 < cal["mape_before"]
    for g, t in zip(genos, truth):
        assert genotype_latency(g, shape, table) == pytest.approx(t, rel=0.01)
    assert genotype_latency(genos[0], shape, table, calibrated=False) == pytest.approx(
        genotype_sum(genos[0], shape, table)
    )


def test_fair_darts_cells_that_concatenate_fewer_nodes_read_their_narrower_preprocessing():
    """A cell concatenating 3 nodes feeds the next cells 3*C channels: the prediction must read those keys,
    and the bundle must hold them; the keys match the eval network's real preprocessing widths."""
    from torch import nn

    from tfnas.darts.latency import genotype_sum
    from tfnas.darts.network import build_eval_net
    from tfnas.darts.space import CellGenotype, Genotype

    shape = DeployShape(C=4, num_cells=3, resolution=8)
    # node 5 has no inputs: the normal cell concatenates nodes 2, 3, 4 only
    normal = CellGenotype(
        (("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("sep_conv_3x3", 2), ("avg_pool_3x3", 3)),
        (2, 3, 4), node_inputs=(2, 1, 2, 0),
    )  # fmt: skip
    reduce = CellGenotype((("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4)
    genotype = Genotype((normal,), (reduce,))

    asked: list[str] = []

    class Recorder:
        def latency(self, key, width=None):
            asked.append(key)
            return 1.0

    genotype_sum(genotype, shape, Recorder())
    net = build_eval_net(genotype, "cifar", C=4, num_cells=3, auxiliary=False, drop_path_prob=0.0)
    convs = [m for c in net.cells for pre in (c.pre0, c.pre1) for m in pre.modules() if isinstance(m, nn.Conv2d)]
    real = {f"cin{m.in_channels}" for m in convs}  # the preprocessing widths the eval net really has
    pre = {k.split("/")[2] for k in asked if "/pre_rcb/" in k or "/pre_fr/" in k}
    assert real == pre and "cin12" in pre  # 3 nodes x C=4 after the normal cell
    written = {g.key for g in fixed_parts(shape, lambda r, a: 3)} | {g.key for g in fixed_parts(shape)}
    assert {k for k in asked if "/pre_" in k} <= written
