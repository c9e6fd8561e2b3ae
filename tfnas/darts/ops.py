"""Candidate operations of the DARTS cell space, in a name -> builder registry.

Every builder has the signature ``(C, stride, affine) -> nn.Module`` and maps a
``(N, C, H, W)`` tensor to ``(N, C, H / stride, W / stride)``. ``affine=False``
is the search setting (the architecture weights, not BN scales, should carry
the op's importance); evaluation networks use ``affine=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tfnas.registry import Registry

OpBuilder = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpBuilder] = Registry("DARTS op")  # one builder per name of tfnas.darts.space.OP_NAMES


def build_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    return OPS[name](C, stride, affine)


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN: the pre-activation unit used for cell inputs."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv units without dilation (the DARTS separable conv)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: an absent edge. Kept explicit so weights still sum over it."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """RobustDARTS S4 ``noise`` op: ignores its input and returns N(mean, std) noise."""

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return torch.randn_like(x) * self.std + self.mean


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two offset 1x1 stride-2 convs, concatenated."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # the second path sees the input shifted by one pixel; odd sizes are padded so both agree
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _conv7x1(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


# name -> builder(C, stride, affine), as in DARTS's operations.py (plus RobustDARTS's noise)
for _name, _build in {
    "none": lambda C, s, a: Zero(s),
    "noise": lambda C, s, a: Noise(s),
    "avg_pool_3x3": lambda C, s, a: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, s, a: nn.MaxPool2d(3, stride=s, padding=1),
    "skip_connect": lambda C, s, a: Identity() if s == 1 else FactorizedReduce(C, C, a),
    "sep_conv_3x3": lambda C, s, a: SepConv(C, C, 3, s, 1, a),
    "sep_conv_5x5": lambda C, s, a: SepConv(C, C, 5, s, 2, a),
    "sep_conv_7x7": lambda C, s, a: SepConv(C, C, 7, s, 3, a),
    "dil_conv_3x3": lambda C, s, a: DilConv(C, C, 3, s, 2, 2, a),
    "dil_conv_5x5": lambda C, s, a: DilConv(C, C, 5, s, 4, 2, a),
    "conv_7x1_1x7": _conv7x1,
}.items():
    OPS.add(_name, _build)

POOL_OPS = frozenset({"avg_pool_3x3", "max_pool_3x3"})


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` (rescaling the rest)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
