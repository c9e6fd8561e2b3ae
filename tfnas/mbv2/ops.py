"""Inverted residual (MBConv) blocks and the stem/head of MobileNetV2-style nets.

The same modules build derived networks and the per-op profiling graphs, so a
latency table measures exactly what a deployed network runs.
"""

from __future__ import annotations

import torch
from torch import nn

from tfnas.registry import Registry

ACT_LAYERS: Registry[type[nn.Module]] = Registry("activation")
"""The one activation table: derived networks, profiling graphs and the supernet's elastic ops read it."""
ACT_LAYERS.add("relu", nn.ReLU)
ACT_LAYERS.add("swish", nn.SiLU)
ACT_LAYERS.add("hswish", nn.Hardswish)


def make_act(name: str, inplace: bool = True) -> nn.Module:
    """The activation layer ``name`` (an unknown name: a ``ConfigError`` listing the known ones)."""
    return ACT_LAYERS[name](inplace=inplace)


class ConvBNAct(nn.Sequential):
    """conv -> BN -> optional activation, 'same' padding."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu"
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> reduce -> act -> expand -> sigmoid gate."""

    def __init__(self, channels: int, reduced: int, act: str = "relu"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * torch.sigmoid(s)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> kxk depthwise -> (SE) -> 1x1 project (+ residual).

    ``expand=False`` drops the 1x1 expansion (the fixed first block, mid == in).
    """

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        se_ch: int = 0,
        act: str = "relu",
        expand: bool = True,
    ):
        super().__init__()
        if not expand and mid_ch != in_ch:
            raise ValueError(f"a block without expansion needs mid == in, got {mid_ch} != {in_ch}")
        self.in_ch, self.mid_ch, self.out_ch = in_ch, mid_ch, out_ch
        self.kernel, self.stride, self.se_ch, self.act_name = kernel, stride, se_ch, act
        self.expand = ConvBNAct(in_ch, mid_ch, 1, act=act) if expand else nn.Identity()
        self.depthwise = ConvBNAct(mid_ch, mid_ch, kernel, stride, groups=mid_ch, act=act)
        self.se = SqueezeExcite(mid_ch, se_ch, act) if se_ch > 0 else nn.Identity()
        self.project = ConvBNAct(mid_ch, out_ch, 1, act=None)
        self.has_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.has_residual else y


class Head(nn.Module):
    """1x1 conv to the feature width, global average pool, dropout, classifier."""

    def __init__(self, in_ch: int, feat_ch: int, num_classes: int, act: str = "swish", dropout: float = 0.0):
        super().__init__()
        self.conv = ConvBNAct(in_ch, feat_ch, 1, act=act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(feat_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(x))
