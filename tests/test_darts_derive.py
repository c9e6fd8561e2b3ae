"""Genotype derivation from hand-set weights, and the cell pictures."""

from __future__ import annotations

import pytest
import torch

from tfnas.darts.derive import derive_cell, derive_from_weights, derive_genotype
from tfnas.darts.draw import plot_genotype
from tfnas.darts.shapes import SupernetSection
from tfnas.darts.space import DARTS_OPS, NUM_EDGES, PUBLISHED, load_cell_space
from tfnas.darts.supernet import DartsSupernet, SupernetStructure

S0 = load_cell_space("s0")
IDX = {op: i for i, op in enumerate(DARTS_OPS)}


def weights_for(choice: dict[int, tuple[str, float]]) -> torch.Tensor:
    """Uniform-ish weights with a chosen (op, strength) on some edges; 'none' strong elsewhere."""
    w = torch.full((NUM_EDGES, len(DARTS_OPS)), 0.01)
    w[:, IDX["none"]] = 0.9  # 'none' must never be picked, however strong
    for e, (op, strength) in choice.items():
        w[e, IDX[op]] = strength
    return w


def test_top2_edges_and_argmax_op_excluding_none():
    # edges: node2 <- 0,1 (e0,e1); node3 <- 0,1,2 (e2..e4); node4 <- 0..3 (e5..e8); node5 <- 0..4 (e9..e13)
    choice = {
        0: ("sep_conv_3x3", 0.5), 1: ("skip_connect", 0.4),
        2: ("max_pool_3x3", 0.2), 3: ("dil_conv_5x5", 0.6), 4: ("sep_conv_5x5", 0.7),
        5: ("avg_pool_3x3", 0.3), 6: ("sep_conv_3x3", 0.1), 7: ("dil_conv_3x3", 0.35), 8: ("skip_connect", 0.05),
        9: ("sep_conv_3x3", 0.2), 10: ("sep_conv_5x5", 0.25), 11: ("max_pool_3x3", 0.3), 12: ("skip_connect", 0.8),
        13: ("dil_conv_3x3", 0.5),
    }  # fmt: skip
    cell = derive_cell(weights_for(choice), S0.normal)
    assert cell.edges == (
        ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("sep_conv_5x5", 2), ("dil_conv_5x5", 1),
        ("dil_conv_3x3", 2), ("avg_pool_3x3", 0),
        ("skip_connect", 3), ("dil_conv_3x3", 4),
    )  # fmt: skip
    assert cell.concat == (2, 3, 4, 5)
    assert all(op != "none" for op, _ in cell.edges)


def test_edge_weights_rerank_edges():
    w = weights_for({2: ("sep_conv_3x3", 0.5), 3: ("sep_conv_3x3", 0.4), 4: ("sep_conv_3x3", 0.3)})
    ew = torch.ones(NUM_EDGES)
    ew[2] = 0.1  # PC-DARTS edge normalisation: edge 2 is weak despite its op weight
    g = derive_from_weights(S0, w[None], w[None], ew[None], ew[None])
    node3 = g.normal[0].edges[2:4]
    assert {src for _, src in node3} == {1, 2}


def test_per_space_op_lists():
    s1 = load_cell_space("s1")
    w = torch.zeros(NUM_EDGES, 2)
    w[:, 1] = 1.0
    cell = derive_cell(w, s1.normal)
    assert cell.edges[0] == (s1.normal[0][1], 0)


def test_multilevel_derives_one_cell_per_stage(tmp_path):
    model = DartsSupernet(S0, SupernetSection(C=4, num_cells=5), SupernetStructure(multi_level=True))
    with torch.no_grad():
        model.arch.normal.zero_()
        model.arch.normal[0, :, IDX["sep_conv_3x3"]] = 5.0
        model.arch.normal[1, :, IDX["skip_connect"]] = 5.0
        model.arch.normal[2, :, IDX["dil_conv_5x5"]] = 5.0
    g = derive_genotype(model)
    assert [c.edges[0][0] for c in g.normal] == ["sep_conv_3x3", "skip_connect", "dil_conv_5x5"]
    assert len(g.reduce) == 2 and g.multi_level
    paths = plot_genotype(g, tmp_path)
    assert len(paths) == 5 and all(p.exists() and p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize("name", ["DARTS_V2"])
def test_plot_published(tmp_path, name):
    paths = plot_genotype(PUBLISHED[name], tmp_path, prefix=name)
    assert [p.name for p in paths] == [f"{name}_normal.png", f"{name}_reduce.png"]
