"""TF-NAS behaviour pinned to the reference code (issue 10, TF-NAS 1-6)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from tests.test_search_tfnas import _target, tiny_config
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.keys import build_signature_module, fixed_signatures
from tfnas.mbv2.net import MBV2Net
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.search.steps import draw_paths, weight_paths
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.mbv2.space import load_space


def _search(tmp_path, tiny_space, **search) -> TFNASSearch:
    cfg = tiny_config(tmp_path, tiny_space, **search)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.4)
    return TFNASSearch(cfg, tmp_path / "run")


# ---- 1. temperature -------------------------------------------------------------------------------------------


def test_temperature_decays_only_after_the_warmup(tmp_path, tiny_space):
    search = _search(tmp_path, tiny_space, epochs=6, warmup_epochs=2, temperature=5.0, temperature_decay=0.96)
    temps = [search.temperature(e) for e in range(6)]
    # the first architecture epoch (2) runs at 5.0; each later one at 0.96 x the previous
    assert temps == pytest.approx([5.0, 5.0, 5.0, 4.8, 4.608, 4.42368], rel=1e-12)


# ---- 2. bi-sampling: the second path is drawn from the ops the first one left -----------------------------------


@pytest.mark.parametrize("scheme", ["gumbel_random", "gumbel_gumbel", "max_alpha", "min_alpha"])
def test_second_path_never_repeats_the_gumbel_op(scheme):
    gen = torch.Generator().manual_seed(0)
    logits = torch.log_softmax(torch.randn(12, 8, generator=gen) * 3, -1)
    seen = set()
    for _ in range(300):
        first, second = draw_paths(weight_paths(scheme), logits, gen)
        assert (first != second).all()
        seen.update(second.tolist())
    if scheme == "gumbel_random":
        assert len(seen) == 8  # any of the other ops can come up


def test_max_and_min_alpha_pick_the_extremes_among_the_remaining_ops():
    gen = torch.Generator().manual_seed(1)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    for _ in range(100):
        first, best = draw_paths(weight_paths("max_alpha"), logits, gen)
        assert best.item() == (1 if first.item() == 0 else 0)
        first, worst = draw_paths(weight_paths("min_alpha"), logits, gen)
        assert worst.item() == (2 if first.item() == 3 else 3)


def test_one_op_search_repeats_the_only_op():
    logits = torch.tensor([[float("-inf"), 0.0, float("-inf")]] * 3)
    first, second = draw_paths(("gumbel", "random"), logits, torch.Generator().manual_seed(0))
    assert first.tolist() == second.tolist() == [1, 1, 1]


def test_weight_step_trains_two_different_ops_per_layer(tmp_path, tiny_space, monkeypatch):
    search = _search(tmp_path, tiny_space)
    seen: list[list[int]] = []
    real = search.model.forward_paths

    def record(x, choices, features=None):
        seen.append(list(choices))
        return real(x, choices, features)

    monkeypatch.setattr(search.model, "forward_paths", record)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for gstep in range(20):
        seen.clear()
        search.weight_step(x, y, gstep, warm=False)
        assert len(seen) == 2 and all(a != b for a, b in zip(*seen))


# ---- 3. architecture gradients are clipped --------------------------------------------------------------------


def test_arch_gradients_are_clipped_at_the_weight_bound(tmp_path, tiny_space, monkeypatch):
    search = _search(tmp_path, tiny_space, latency_lambda=1.0e4)  # a latency term that dwarfs the bound
    norms = []
    real_step = search.a_opt.step

    def step(*a, **k):
        grads = [p.grad.flatten() for p in search.model.arch_parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))
        return real_step(*a, **k)

    monkeypatch.setattr(search.a_opt, "step", step)
    search.arch_step(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)), 0, epoch=1)
    assert search.cfg.optim.grad_clip == 5.0
    assert norms and norms[0] == pytest.approx(5.0, rel=1e-4)


# ---- 4. block shapes: supernet, derived network and latency keys agree -----------------------------------------


def _se_widths(module: nn.Module) -> list[int]:
    return [m.reduce.out_channels for m in module.modules() if hasattr(m, "reduce")]


def test_first_block_has_the_reference_se_width_everywhere():
    space = load_space("tfnas_imagenet")
    supernet = TFNASSupernet(space)
    arch = Architecture.random(space, random.Random(0))
    net = MBV2Net(arch)
    profiled = build_signature_module(space, fixed_signatures(space)["first"], None)

    # reference: MBInvertedResBlock(in 32, mid 32, se 8, out 16), no expansion conv
    def conv_shapes(block: nn.Module) -> dict:
        return {k: tuple(m.weight.shape) for k, m in block.named_modules() if isinstance(m, nn.Conv2d)}

    for block in (supernet.first_block, net.first_block, profiled):
        assert _se_widths(block) == [8]
        assert conv_shapes(block) == conv_shapes(net.first_block)
    shapes = conv_shapes(net.first_block)
    assert shapes["depthwise.0"] == (32, 1, 3, 3) and shapes["project.0"] == (16, 32, 1, 1)


def test_searchable_layer_se_width_matches_reference_and_derived_net():
    space = load_space("tfnas_imagenet")
    supernet = TFNASSupernet(space)
    g = space.layers()[2]  # stage 2, first layer: in 24, out 40
    layer = supernet.layers[2]
    # reference: SE width in_channels for e3 ops, 2 x in_channels for e6 ops
    want = {"k3_e3_se": 24, "k5_e3_se": 24, "k3_e6_se": 48, "k5_e6_se": 48, "k3_e3": 0, "k5_e6": 0}
    for op, se in want.items():
        assert layer.ops[supernet.op_names.index(op)].se_ch == se
        assert space.se_width(op, g.in_ch) == se


# ---- 5. no dropout while searching ----------------------------------------------------------------------------


def test_supernet_searches_without_dropout_and_derived_net_keeps_it(tiny_space_dict):
    from tfnas.mbv2.space import space_from_dict

    tiny_space_dict["head"]["dropout"] = 0.5
    space = space_from_dict(tiny_space_dict, "tiny.yaml")
    model = TFNASSupernet(space).train()
    x, choice = torch.randn(4, 3, 32, 32), [0] * space.num_layers()
    torch.manual_seed(0)
    a = model.forward_paths(x, choice)
    b = model.forward_paths(x, choice)
    assert torch.equal(a, b)  # dropout 0.5 would make two training-mode forwards differ
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    arch = Architecture.random(space, random.Random(0))
    assert [m.p for m in MBV2Net(arch).modules() if isinstance(m, nn.Dropout)] == [0.5]
