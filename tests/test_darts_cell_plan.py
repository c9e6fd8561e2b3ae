"""One DARTS cell plan: the supernet, the evaluation network and the latency keys agree cell by cell."""

from __future__ import annotations

import pytest
import torch

from tfnas.darts.latency import deploy_positions
from tfnas.darts.network import build_eval_net
from tfnas.darts.shapes import DeployShape, SupernetSection
from tfnas.darts.space import NUM_EDGES, cell_plan, get_genotype, load_cell_space
from tfnas.darts.supernet import DartsSupernet, SupernetStructure


def _seen(model: torch.nn.Module, x: torch.Tensor, edges: str) -> tuple[list[tuple], list[list[int]]]:
    """Per cell what the network really did: (C of s0, C of s1, H of s1, C out, H out), and per edge its stride."""
    cells, strides = [], []
    hooks = []
    for cell in model.cells:
        hooks.append(
            cell.register_forward_hook(
                lambda m, i, o: cells.append((i[0].shape[1], i[1].shape[1], i[1].shape[-1], o.shape[1], o.shape[-1]))
            )
        )
        per_edge: list[int] = []
        strides.append(per_edge)
        for op in getattr(cell, edges):
            hooks.append(op.register_forward_hook(lambda m, i, o, r=per_edge: r.append(i[0].shape[-1] // o.shape[-1])))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return cells, strides


def _planned(plan) -> list[tuple]:
    return [(p.C_pp, p.C_p, p.H_in, p.C_out, p.H_in // 2 if p.reduction else p.H_in) for p in plan]


def test_supernet_eval_net_and_deploy_plan_agree_cell_by_cell():
    C, cells, res = 8, 5, 16
    deploy = deploy_positions(DeployShape(C=C, num_cells=cells, resolution=res))
    assert deploy == cell_plan(C, cells, resolution=res)
    assert [p.reduction for p in deploy] == [False, True, False, True, False]

    supernet = DartsSupernet(
        load_cell_space("s0"), SupernetSection(C=C, num_cells=cells), SupernetStructure(multi_level=True)
    )
    seen, strides = _seen(supernet, torch.randn(1, 3, res, res), "edges")
    assert seen == _planned(deploy)
    assert strides == [[p.edge_stride(e) for e in range(NUM_EDGES)] for p in deploy]
    assert [a for _, a in supernet.alpha_index] == [p.alpha_set for p in deploy]

    genotype = get_genotype("DARTS_V2")
    net = build_eval_net(genotype, "cifar", C=C, num_cells=cells, auxiliary=False)
    seen, strides = _seen(net, torch.randn(1, 3, res, res), "ops")
    assert seen == _planned(deploy)
    for p, got in zip(deploy, strides):
        cell = genotype.reduce_cell(p.alpha_set) if p.reduction else genotype.normal_cell(p.alpha_set)
        assert got == [p.src_stride(src) for _, src in cell.edges]


def test_eval_net_plan_follows_the_genotype_and_the_imagenet_stem():
    genotype = get_genotype("DARTS_V2")
    net = build_eval_net(genotype, "imagenet", C=8, num_cells=5, auxiliary=False, num_classes=10)
    seen, _ = _seen(net, torch.randn(1, 3, 224, 224), "ops")  # the plan's default ImageNet resolution
    assert seen == _planned(net.plan) and net.plan[0].H_in == 28 and net.plan[0].reduction_prev
    # a cell that concatenates fewer nodes hands fewer channels on
    short = cell_plan(8, 5, outputs=lambda reduction, alpha_set: 2 if reduction else 4)
    assert [p.C_out for p in short] == [32, 32, 64, 64, 128] and short[2].C_pp == 32 and short[2].C_p == 32


@pytest.mark.parametrize("cells", [3, 8, 20])
def test_plan_reduces_at_a_third_and_two_thirds(cells):
    plan = cell_plan(16, cells)
    reductions = [p.index for p in plan if p.reduction]
    assert reductions == [cells // 3, 2 * cells // 3]
    assert [p.C for p in plan if p.reduction] == [32, 64]
    assert all(plan[r + 1].reduction_prev for r in reductions if r + 1 < cells)
