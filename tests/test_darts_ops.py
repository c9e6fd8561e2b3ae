"""DARTS candidate ops: shapes at stride 1/2, factorized reduce, channel shuffle, drop path."""

from __future__ import annotations

import pytest
import torch

from tfnas.darts.ops import OPS, FactorizedReduce, build_op, channel_shuffle, drop_path


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shapes(name, stride):
    op = build_op(name, 8, stride, affine=False)
    y = op(torch.randn(2, 8, 8, 8))
    assert y.shape == (2, 8, 8 // stride, 8 // stride)


def test_none_and_noise():
    x = torch.randn(2, 4, 6, 6)
    assert torch.count_nonzero(build_op("none", 4, 1)(x)) == 0
    n = build_op("noise", 4, 2)(x)
    assert n.shape == (2, 4, 3, 3) and n.std() > 0.1


def test_factorized_reduce_odd_size():
    assert FactorizedReduce(4, 6)(torch.randn(1, 4, 7, 7)).shape == (1, 6, 4, 4)


def test_channel_shuffle_is_a_permutation():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    y = channel_shuffle(x, 4).flatten().tolist()
    assert sorted(y) == list(range(8)) and y[:4] == [0.0, 2.0, 4.0, 6.0]


def test_drop_path_drops_whole_samples():
    torch.manual_seed(0)
    y = drop_path(torch.ones(200, 2, 2, 2), 0.5)
    per_sample = y.flatten(1)
    assert set(per_sample[:, 0].tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert drop_path(torch.ones(3, 1, 1, 1), 0.0).sum() == 3
