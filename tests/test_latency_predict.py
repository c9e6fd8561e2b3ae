"""Prediction: sum of entries, interpolation, calibration, exact feasible range."""

from __future__ import annotations

import random

import pytest

from tests.test_latency_table import make_table, synthetic_latency
from tfnas.errors import LatencyTableError
from tfnas.latency.calibrate import fit_affine, fit_calibration
from tfnas.latency.table import Lookup
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.calibrate import calibrate
from tfnas.mbv2.keys import arch_entries, arch_mweights, build_signature_module, layer_signature, layer_weights
from tfnas.mbv2.predict import feasible_range, predict, predict_breakdown


def test_predict_is_the_sum_of_entries(tiny_space):
    table = make_table(tiny_space)
    rng = random.Random(0)
    for _ in range(10):
        arch = Architecture.random(tiny_space, rng)
        rows = predict_breakdown(arch, table)
        assert [(k, w) for k, w, _ in rows] == arch_entries(arch)
        expected = sum(synthetic_latency(k, w) for k, w in arch_entries(arch))
        assert predict(arch, table) == pytest.approx(expected)  # off-grid widths interpolate exactly here


def test_calibration_is_applied(tiny_space):
    table = make_table(tiny_space)
    arch = Architecture.uniform(tiny_space, "k3_e3")
    raw = predict(arch, table)
    table.calibration = {
        "scale": 2.0,
        "offset_ms": 0.5,
        "samples": 3,
        "mape_before": 1,
        "mape_after": 0,
        "method": "test",
    }
    assert predict(arch, table) == pytest.approx(2.0 * raw + 0.5)
    assert predict(arch, table, calibrated=False) == pytest.approx(raw)


def test_feasible_range_bounds_every_architecture(tiny_space):
    table = make_table(tiny_space)
    fast, slow = feasible_range(tiny_space, table)
    assert 0 < fast < slow
    rng = random.Random(1)
    lats = [predict(Architecture.random(tiny_space, rng), table) for _ in range(200)]
    assert all(fast - 1e-9 <= v <= slow + 1e-9 for v in lats)
    # both ends are attained: the slowest op at full depth reaches `slow` in the synthetic table
    full = [
        predict(Architecture.uniform(tiny_space, op, width=w), table) for op in tiny_space.ops for w in ("min", "max")
    ]
    assert max(full) <= slow + 1e-9


def test_prediction_at_another_resolution_is_an_error(tiny_space):
    table = make_table(tiny_space)
    arch = Architecture.uniform(tiny_space, "k3_e3", resolution=64)
    with pytest.raises(LatencyTableError, match="resolution 32.*64"):
        predict(arch, table)


def test_calibration_reduces_error_on_a_constructed_case(tiny_space):
    table = make_table(tiny_space)

    def measured(arch):  # a "device" whose whole-network latency is affine in the op sum
        return 1.3 * predict(arch, table, calibrated=False) + 0.2

    cal = calibrate(table, tiny_space, n=8, seed=0, measure_fn=measured, progress=False)
    assert cal["scale"] == pytest.approx(1.3) and cal["offset_ms"] == pytest.approx(0.2)
    assert cal["mape_after"] < 1e-6 < cal["mape_before"]
    arch = Architecture.random(tiny_space, random.Random(5))
    assert predict(arch, table) == pytest.approx(measured(arch))
    assert fit_affine([1.0], [2.0]) == pytest.approx((2.0, 0.0))


def test_fit_is_relative_least_squares_with_a_safe_fallback():
    p = [1.0, 2.0, 4.0, 8.0]
    scale, offset = fit_affine(p, [2 * x + 1 for x in p])
    assert scale == pytest.approx(2.0) and offset == pytest.approx(1.0)
    scale, offset = fit_affine([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])  # anti-correlated noise: no negative scale
    assert scale > 0 and offset == 0.0
    scale, offset = fit_affine(p, [2 * x - 0.5 for x in p])  # a negative overhead is refitted as a pure scale
    assert scale > 0 and offset == 0.0


def test_layer_weights_count_the_deployed_convs(tiny_space):
    """The streaming feature is the conv weights the exported layer really holds (BN folds away)."""
    import torch

    for g in tiny_space.layers():
        for op in tiny_space.ops:
            lo, hi = tiny_space.width_bounds(op, g.in_ch)
            for w in (lo, hi):
                module = build_signature_module(tiny_space, layer_signature(tiny_space, g, op), w)
                convs = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
                assert layer_weights(tiny_space, g, op, w) == convs, (g, op, w)


def test_weight_streaming_calibration_is_recovered_and_applied(tiny_space):
    table = make_table(tiny_space)

    pad = Lookup(table).grid.runtime_width  # the runtime streams aligned widths padded to its block

    def measured(arch):  # a device that streams weights: 0.8 ms per million on top of the op sum
        return 1.2 * predict(arch, table, calibrated=False) + 0.8 * arch_mweights(arch, pad) + 0.1

    cal = calibrate(table, tiny_space, n=16, seed=0, measure_fn=measured, progress=False)
    assert cal["scale"] == pytest.approx(1.2) and cal["offset_ms"] == pytest.approx(0.1, abs=1e-9)
    assert cal["ms_per_mweight"] == pytest.approx(0.8)
    rng = random.Random(7)
    for _ in range(5):
        arch = Architecture.random(tiny_space, rng)
        assert predict(arch, table) == pytest.approx(measured(arch))
    fast, slow = feasible_range(tiny_space, table)
    lats = [predict(Architecture.random(tiny_space, rng), table) for _ in range(100)]
    assert all(fast - 1e-9 <= v <= slow + 1e-9 for v in lats)


def test_weight_term_falls_back_to_affine_when_it_would_reward_weights():
    p, w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4]
    fit = fit_calibration(p, w, [2 * x - 0.3 * v + 1 for x, v in zip(p, w)])
    assert fit.ms_per_mweight == 0.0 and fit.scale > 0
    fit = fit_calibration(p[:3], w[:3], [2 * x + 1 for x in p[:3]])  # too few samples to separate the terms
    assert fit.ms_per_mweight == 0.0 and fit.scale == pytest.approx(2.0) and fit.offset_ms == pytest.approx(1.0)


def test_weight_streaming_is_charged_on_the_padded_width(tiny_space):
    """ORT pads an aligned width to its SIMD block: up to the block boundary a layer is free, past it not."""
    from tfnas.mbv2.search.elastic import grow_free
    from tfnas.mbv2.search.latency import LatencyModel

    table = make_table(tiny_space)  # sparse grid: align 4, block 16
    table.calibration = {"scale": 1.0, "offset_ms": 0.0, "ms_per_mweight": 5.0}
    lat = LatencyModel(tiny_space, table, width_align=4)
    op = lat.op_names.index("k3_e6_se")
    i = next(i for i, g in enumerate(lat.geometry) if tiny_space.width_bounds("k3_e6_se", g.in_ch) == (32, 64))
    assert lat.lookup.grid.runtime_width(36) == 48 and lat.lookup.grid.runtime_width(37) == 37
    assert lat.op_cost(i, op, 36) == pytest.approx(lat.op_cost(i, op, 48))
    assert lat.op_cost(i, op, 52) > lat.op_cost(i, op, 48)
    ops = [op] * len(lat.geometry)
    widths = [
        max(lat.allowed_widths(j, op)[0], 36) if j == i else lat.allowed_widths(j, op)[0] for j in range(len(ops))
    ]
    depths = [len(range(a, b)) for a, b in lat.stage_slices]
    assert grow_free(lat, ops, widths, depths)[i] == 48
