"""DARTS spaces (S0..S4), genotypes and evaluation networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tfnas.darts.network import build_eval_net, count_params_without_aux
from tfnas.darts.space import (
    NUM_EDGES,
    PUBLISHED,
    CellGenotype,
    Genotype,
    available_cell_spaces,
    cell_edges,
    genotype_from_dict,
    get_genotype,
    load_cell_space,
    load_genotype,
    reduction_indices,
    stage_of,
)
from tfnas.errors import ConfigError
from tfnas.utils.io import repo_root

REFERENCE = Path("/work/shared/reference/darts_search_spaces.json")


def test_cell_topology():
    edges = cell_edges()
    assert NUM_EDGES == 14 and len(edges) == 14
    assert edges[:2] == [(2, 0), (2, 1)] and edges[-1] == (5, 4)
    assert reduction_indices(8) == (2, 5) and reduction_indices(20) == (6, 13)
    assert [stage_of(i, 8) for i in range(8)] == [0, 0, 1, 1, 1, 2, 2, 2]


def test_spaces_listed_and_s0_is_darts():
    assert available_cell_spaces() == ["s0", "s0_no_none", "s1", "s2", "s3", "s4"]
    s0 = load_cell_space("s0")
    fair = load_cell_space("s0_no_none")  # Fair DARTS's op set: S0 without 'none', same order
    assert fair.normal == tuple(tuple(o for o in e if o != "none") for e in s0.normal) and fair.num_ops == 7
    assert s0.num_ops == 8 and set(s0.normal[0]) >= {"none", "sep_conv_3x3", "dil_conv_5x5", "skip_connect"}
    assert "noise" in load_cell_space("s4").normal[0]


@pytest.mark.skipif(not REFERENCE.exists(), reason="project reference file not available")
def test_spaces_equal_reference_file():
    ref = json.loads(REFERENCE.read_text())
    ours = json.loads((repo_root() / "configs/darts/spaces.json").read_text())
    assert ours["s0"] == ref["s0_darts"]
    for name in ("s1", "s2", "s3", "s4"):
        assert ours[name] == ref[name], name
        space = load_cell_space(name)
        assert [list(e) for e in space.normal] == ref[name]["normal"]
        assert [list(e) for e in space.reduce] == ref[name]["reduce"]


def test_bad_spaces_rejected():
    with pytest.raises(ConfigError, match="unknown DARTS space"):
        load_cell_space("s9")
    with pytest.raises(ConfigError, match="edges"):
        load_cell_space({"normal": [["skip_connect"]], "reduce": [["skip_connect"]]})
    with pytest.raises(ConfigError, match="unknown ops"):
        load_cell_space({"normal": [["conv_9x9"]] * 14, "reduce": [["skip_connect"]] * 14})


def test_genotype_json_roundtrip(tmp_path):
    g = PUBLISHED["DARTS_V2"]
    path = g.save(tmp_path / "g.json")
    back = load_genotype(path)
    assert back == g
    # DARTS-style flat form is accepted too
    flat = {"normal": [list(e) for e in g.normal[0].edges], "normal_concat": [2, 3, 4, 5],
            "reduce": [list(e) for e in g.reduce[0].edges], "reduce_concat": [2, 3, 4, 5]}  # fmt: skip
    assert genotype_from_dict(flat) == g
    assert get_genotype("darts-v2") == g and get_genotype(str(path)) == g


def test_genotype_validation():
    with pytest.raises(ConfigError, match="comes from node"):
        CellGenotype([("sep_conv_3x3", 2), ("skip_connect", 0)])
    with pytest.raises(ConfigError, match="unknown op"):
        CellGenotype([("conv_9x9", 0), ("skip_connect", 1)])
    with pytest.raises(ConfigError, match="unknown genotype"):
        get_genotype("NOT_A_GENOTYPE")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_eval_nets_build_for_published(name):
    g = PUBLISHED[name]
    net = build_eval_net(g, "cifar", C=8, num_cells=8)
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    full = build_eval_net(g, "cifar")
    assert full.net.C == 36 and len(full.cells) == 20
    imnet = build_eval_net(g, "imagenet", auxiliary=False).eval()
    assert len(imnet.cells) == 14 and imnet.net.C == 48
    with torch.no_grad():
        assert imnet(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_published_param_counts_match_papers():
    from tfnas.utils.flops import count_macs

    # DARTS (2nd order) paper: 3.3 M params on CIFAR-10; 4.7 M on ImageNet (mobile setting, < 600 M mult-adds)
    cifar = build_eval_net(PUBLISHED["DARTS_V2"], "cifar")
    assert abs(count_params_without_aux(cifar) / 1e6 - 3.3) < 0.1
    imnet = build_eval_net(PUBLISHED["DARTS_V2"], "imagenet")
    assert abs(count_params_without_aux(imnet) / 1e6 - 4.7) < 0.1
    assert 450e6 < count_macs(imnet, (1, 3, 224, 224)) < 600e6


def test_multilevel_genotype_in_eval_net():
    cells = [PUBLISHED[n].normal[0] for n in ("DARTS_V1", "DARTS_V2", "PDARTS")]
    g = Genotype(tuple(cells), (PUBLISHED["DARTS_V1"].reduce[0], PUBLISHED["PDARTS"].reduce[0]))
    assert g.multi_level
    net = build_eval_net(g, "cifar", C=8, num_cells=8, auxiliary=False).eval()
    # cell 0 (low stage) uses DARTS_V1's normal cell, the last (high) P-DARTS's
    assert net.cells[0].sources == [s for _, s in cells[0].edges]
    assert net.cells[-1].sources == [s for _, s in cells[2].edges]
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
