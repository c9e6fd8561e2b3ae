"""Derived-architecture file: round trip, validation errors, builder, FLOPs/params."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture, LayerChoice, load_arch
from tfnas.mbv2.net import build_model
from tfnas.mbv2.ops import InvertedResidual
from tfnas.utils.flops import count_macs, count_params


def test_round_trip(tmp_path, tiny_space):
    arch = Architecture.random(tiny_space, random.Random(3))
    arch.meta["target_ms"] = 1.5
    arch.save(tmp_path / "a.json")
    back = load_arch(tmp_path / "a.json", space=tiny_space)
    assert back.to_dict() == arch.to_dict()


def test_builder_output_shape_and_depth(tiny_space):
    arch = Architecture.uniform(tiny_space, "k3_e6_se")
    arch.depths = [1, 2]
    model = build_model(arch)
    assert len(model.blocks) == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_stage_input_is_a_sink_point_only_when_shapes_allow(tiny_space):
    # tiny stage 0: 8 -> 8 channels, stride 1: depth 0 allowed; stage 1 changes shape: depth >= 1
    assert tiny_space.min_depth(0) == 0 and tiny_space.min_depth(1) == 1
    arch = Architecture.uniform(tiny_space, "k3_e3")
    arch.depths = [0, 1]
    arch.validate()
    assert build_model(arch)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def _mbconv_macs(in_ch, mid, out, k, stride, size, se):
    out_size = (size + stride - 1) // stride
    macs = size * size * in_ch * mid  # expand 1x1
    macs += out_size * out_size * mid * k * k  # depthwise
    if se:
        macs += mid * se + se * mid  # SE 1x1 convs on a 1x1 map
    macs += out_size * out_size * mid * out  # project 1x1
    return macs


def test_flops_and_params_match_hand_computation(tiny_space):
    # One block, counted by hand.
    block = InvertedResidual(8, 48, 16, 3, 2, se_ch=16, act="swish")
    assert count_macs(block, (1, 8, 16, 16)) == _mbconv_macs(8, 48, 16, 3, 2, 16, 16)
    params = 8 * 48 + 2 * 48 + 48 * 9 + 2 * 48 + (48 * 16 + 16) + (16 * 48 + 48) + 48 * 16 + 2 * 16
    assert count_params(block) == params

    # The whole tiny network: stem, first block, 4 layers of k3_e3 at width 24/24/24/48, head.
    arch = Architecture.uniform(tiny_space, "k3_e3")
    widths = [c.width for layers in arch.stages for c in layers]
    assert widths == [24, 24, 24, 48]
    expected = 16 * 16 * 8 * 3 * 9  # stem: 32 -> 16
    expected += 16 * 16 * 8 * 9 + (8 * 2 + 2 * 8) + 16 * 16 * 8 * 8  # first block (no expand, SE 8 / 4 = 2)
    expected += 2 * _mbconv_macs(8, 24, 8, 3, 1, 16, 0)
    expected += _mbconv_macs(8, 24, 16, 3, 2, 16, 0) + _mbconv_macs(16, 48, 16, 3, 1, 8, 0)
    expected += 8 * 8 * 16 * 32 + 32 * 10  # head conv + classifier
    assert count_macs(build_model(arch), (1, 3, 32, 32)) == expected


def _write(tmp_path, data):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["stages"][0]["layers"][1].update(op="k7_e9"), "stages[0].layers[1].op = 'k7_e9': unknown op"),
        (
            lambda d: d["stages"][1]["layers"][0].update(width=1000),
            "stages[1].layers[0].width = 1000: expected an integer in [16, 32]",
        ),
        (lambda d: d["stages"][1].update(depth=3), "stages[1].depth = 3: expected an integer in [1, 2]"),
        (lambda d: d["stages"][1].update(depth=0), "stages[1].depth = 0"),
        (lambda d: d.update(version=99), "'version' = 99: this tfnas reads version 1"),
        (lambda d: d.update(space="nonexistent"), "unknown search space 'nonexistent'"),
        (lambda d: d["stages"].pop(), "'stages' has 1 entries"),
    ],
)
def test_bad_architecture_files_get_clear_errors(tmp_path, tiny_space, mutate, expected):
    data = Architecture.uniform(tiny_space, "k3_e3").to_dict()
    mutate(data)
    path = _write(tmp_path, data)
    space = None if data["space"] != "tiny" else tiny_space
    with pytest.raises(ConfigError) as e:
        load_arch(path, space=space)
    assert expected in str(e.value)
    assert "arch.json" in str(e.value)


def test_truncated_arch_file(tmp_path, tiny_space):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(Architecture.uniform(tiny_space, "k3_e3").to_dict())[:40])
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_arch(p, space=tiny_space)


def test_random_architectures_are_valid_and_build(tiny_space):
    rng = random.Random(0)
    for _ in range(5):
        arch = Architecture.random(tiny_space, rng)
        assert build_model(arch)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert isinstance(arch.stages[0][0], LayerChoice)
