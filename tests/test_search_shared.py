"""Weight-shared candidate ops (``search.op_weights: shared``, issue 22) and the published initialisation of the
independent ones."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.test_search_tfnas import _target, tiny_config
from tfnas.mbv2.search.config import DEFAULTS
from tfnas.mbv2.search.elastic import apply_widths, keep_order
from tfnas.mbv2.search.layers import SharedMixedLayer
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.search.supernet import TFNASSupernet


def _paths_agree(model: TFNASSupernet, x: torch.Tensor) -> float:
    """Largest difference between the outputs of the uniform paths (op i everywhere) and op 0's."""
    n = len(model.layers)
    with torch.no_grad():
        outs = [model.forward_paths(x, [o] * n) for o in range(len(model.op_names))]
    return max(float((o - outs[0]).abs().max()) for o in outs)


def test_shared_layer_holds_one_tensor_set_at_the_largest_bound(tiny_space):
    shared = TFNASSupernet(tiny_space, op_weights="shared")
    indep = TFNASSupernet(tiny_space)
    for layer, ref in zip(shared.layers, indep.layers):
        assert isinstance(layer, SharedMixedLayer)
        assert layer.expand.shape[0] == max(op.bound for op in ref.ops)
        assert layer.dw.shape[-1] == max(op.kernel for op in ref.ops)
    n_shared = sum(p.numel() for p in shared.layers.parameters())
    n_indep = sum(p.numel() for p in indep.layers.parameters())
    assert n_shared < n_indep  # one tensor set instead of one per candidate


@pytest.mark.parametrize("op_weights", ["shared", "independent"])
def test_aligned_start_makes_every_candidate_the_same_function(tiny_space, op_weights):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    aligned = TFNASSupernet(tiny_space, 4, op_weights=op_weights, aligned_start=True)
    assert _paths_agree(aligned, x) < 1e-3
    random = TFNASSupernet(tiny_space, 4, op_weights=op_weights, aligned_start=False)
    assert _paths_agree(random, x) > 0.05  # without it the candidates are unrelated functions
    # the defaults: shared weights start aligned, independent ones as the reference initialises them
    assert _paths_agree(TFNASSupernet(tiny_space, 4, op_weights="shared"), x) < 1e-3
    assert _paths_agree(TFNASSupernet(tiny_space, 4), x) > 0.05
    assert DEFAULTS.search.op_weights == "independent" and DEFAULTS.search.aligned_start is None


def test_superkernel_with_one_hot_weights_is_exactly_that_candidate(tiny_space):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space, op_weights="shared", aligned_start=False)  # candidates differ
    apply_widths(model, [0, 1, 2, 1], [20, 40, 32, 100])  # elastic widths differ per op
    x = torch.randn(4, 3, 32, 32)
    for choice in ([1, 0, 2, 1], [2, 2, 0, 0], [0, 1, 1, 2]):
        onehot = F.one_hot(torch.tensor(choice), 3).float()
        assert torch.allclose(model.forward_paths(x, choice), model.forward_mixed(x, onehot), atol=1e-5)


def test_superkernel_mixes_kernels_widths_and_gates_and_its_gradient_reaches_every_op_weight(tiny_space):
    torch.manual_seed(0)
    layer = TFNASSupernet(tiny_space, op_weights="shared", aligned_start=False).layers[1]
    x = torch.randn(4, layer.in_ch, 16, 16)
    w = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    out = layer.forward_mixed(x, w, [0, 1, 2])
    assert not torch.allclose(out, layer.forward_single(x, 1), atol=1e-3)  # a mix, not the heaviest op
    out.pow(2).mean().backward()
    assert w.grad is not None and bool((w.grad.abs() > 0).all())


def test_a_step_on_one_candidate_moves_the_weights_all_of_them_use(tiny_space):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space, 4, op_weights="shared")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    F.cross_entropy(model.forward_paths(x, [0] * 4), y).backward()
    layer = model.layers[0]
    w0 = layer._w[0]
    assert layer.expand.grad is not None and float(layer.expand.grad[:w0].abs().sum()) > 0
    before = model.forward_paths(x, [2] * 4).detach()
    with torch.no_grad():
        for p in model.weight_parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert not torch.allclose(model.forward_paths(x, [2] * 4), before)  # op 2 was never run, yet it moved


def test_width_change_reorders_the_shared_channels_with_their_momentum(tiny_space):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space, 4, op_weights="shared", aligned_start=False)
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    F.cross_entropy(model.forward_paths(x, [1, 1, 1, 1]), y).backward()
    opt.step()
    layer, op = model.layers[0], 1
    old = layer._w[op]
    dw, expand = layer.dw.detach().clone(), layer.expand.detach().clone()
    mom = opt.state[layer.expand]["momentum_buffer"].clone()
    perm = keep_order(layer.importance(op), old, "all")
    apply_widths(model, [op, 0, 0, 0], [old - 8, *model.widths()[1][:1], model.widths()[2][0], model.widths()[3][0]],
                 opt, "all")  # fmt: skip
    assert layer._w[op] == old - 8 and layer.widths[op] == old - 8
    assert torch.equal(layer.dw.detach(), dw[perm]) and torch.equal(layer.expand.detach(), expand[perm])
    assert torch.equal(opt.state[layer.expand]["momentum_buffer"], mom[perm])
    imp = layer.importance(op)  # the op keeps its channels of largest depthwise L1 norm
    assert float(imp[: old - 8].min()) >= float(imp[old - 8 :].max())


def test_independent_ops_keep_pytorchs_default_init_as_the_official_supernet(tiny_space):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space)
    for layer in model.layers:
        for op in layer.ops:
            for p in (op.expand, op.dw, op.project):
                bound = 1.0 / math.sqrt(p[0].numel())  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
                assert float(p.abs().max()) <= bound + 1e-7
                assert float(p.std()) == pytest.approx(bound / math.sqrt(3), rel=0.25)  # uniform, not normal
            if op.se_ch:
                assert float(op.se_reduce_b.abs().max()) > 0  # nn.Conv2d's biases are not zero either


@pytest.mark.parametrize("aligned", [True, False])
def test_shared_search_hits_the_target_and_reports_what_the_supernet_learned(tmp_path, tiny_space, aligned):
    cfg = tiny_config(tmp_path, tiny_space, op_weights="shared", aligned_start=aligned)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.4)
    result = TFNASSearch(cfg, tmp_path / "run").run()
    assert abs(result.predicted_ms / cfg["target_ms"] - 1) <= 0.003
    report = json.loads(result.report_path.read_text())
    assert report["target_hit"] and 0.0 <= report["supernet_held_out_acc"] <= 1.0
    assert report["derived_slice_held_out_acc"] == result.slice_acc and 0.0 <= result.slice_acc <= 1.0
    assert result.arch.meta["op_weights"] == "shared"


def test_slice_of_the_supernet_is_the_architecture_at_its_widths_and_depths(tiny_space):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space, 4, op_weights="shared", aligned_start=False)
    x = torch.randn(4, 3, 32, 32)
    ops, depths = [1, 2, 0, 1], [1, 2]
    widths = [layer._w[o] for layer, o in zip(model.layers, ops)]
    with torch.no_grad():
        out = model.forward_arch(x, ops, widths, depths)
        model.layers[1].expand.mul_(3.0)  # layer 1 is past stage 1's depth: not part of the slice
        assert torch.equal(model.forward_arch(x, ops, widths, depths), out)
        assert not torch.allclose(model.forward_arch(x, ops, widths, [2, 2]), out)
        narrower = [w - 4 for w in widths]  # a width is a prefix of the shared channels
        assert not torch.allclose(model.forward_arch(x, ops, narrower, depths), out)


@pytest.mark.parametrize("op_weights", ["shared", "independent"])
def test_derived_network_can_start_from_its_slice_of_the_supernet(tiny_space, op_weights):
    from tfnas.errors import ConfigError
    from tfnas.mbv2.arch import Architecture
    from tfnas.mbv2.search.inherit import arch_choice, slice_network

    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space, 4, op_weights=op_weights, aligned_start=False)
    ops = [1, 2, 0, 1]
    apply_widths(model, ops, [40, 24, 20, 64])  # widths moved: the kept channels come first
    doc = Architecture.uniform(tiny_space, "k3_e3").to_dict()
    layers = iter(zip(ops, [40, 24, 20, 64]))
    for stage in doc["stages"]:
        stage["layers"] = [{"op": model.op_names[o], "width": w} for o, w in (next(layers) for _ in stage["layers"])]
    arch = Architecture.from_dict(doc, "test", tiny_space)
    x = torch.randn(8, 3, 32, 32)
    net = slice_network(model, arch).train()  # training-mode BN: batch statistics, as the supernet's
    with torch.no_grad():
        assert torch.allclose(net(x), model.forward_arch(x, *arch_choice(arch)), atol=1e-4)
    with pytest.raises(ConfigError, match="cannot start a network of 7"):
        slice_network(model, arch, num_classes=7)
