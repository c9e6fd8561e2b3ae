"""Build a plain ``nn.Module`` from a derived architecture (no search machinery inside)."""

from __future__ import annotations

import torch
from torch import nn

from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.ops import ConvBNAct, Head, InvertedResidual
from tfnas.mbv2.space import MBV2Space


def build_stem(space: MBV2Space) -> nn.Module:
    st = space.stem
    return ConvBNAct(space.in_channels, st.out, st.kernel, st.stride, act=st.act)


# SE reduction width of the fixed first block, as a fraction of its input channels: the reference block is
# (in 32, mid 32, SE 8, out 16), EfficientNet-B0's first block (se_ratio 0.25); the searchable ops use
# ``space.se_width`` instead (in_channels x 1 or x 2).
FIRST_BLOCK_SE_RATIO = 0.25


def first_block_se_width(space: MBV2Space) -> int:
    """SE width of the fixed first block (0 without SE): 8 for the reference's 32 input channels."""
    return max(1, int(space.stem.out * FIRST_BLOCK_SE_RATIO)) if space.first_block.se else 0


def build_first_block(space: MBV2Space) -> nn.Module:
    fb = space.first_block
    se = first_block_se_width(space)
    return InvertedResidual(space.stem.out, fb.mid, fb.out, fb.kernel, fb.stride, se, fb.act, expand=False)


def build_head(space: MBV2Space, num_classes: int | None = None, dropout: float | None = None) -> nn.Module:
    """The head; ``dropout`` None: the space's (the derived network's training dropout)."""
    rate = space.head.dropout if dropout is None else dropout
    return Head(space.stages[-1].out, space.head.out, num_classes or space.num_classes, space.head.act, rate)


def build_layer(space: MBV2Space, in_ch: int, out_ch: int, stride: int, act: str, op: str, width: int) -> nn.Module:
    spec = space.ops[op]
    return InvertedResidual(in_ch, width, out_ch, spec.kernel, stride, space.se_width(op, in_ch), act)


class MBV2Net(nn.Module):
    """stem -> first block -> searched layers -> head."""

    def __init__(self, arch: Architecture, num_classes: int | None = None, dropout: float | None = None):
        """``dropout``: the head's, None: the space's."""
        super().__init__()
        space = arch.space
        self.stem = build_stem(space)
        self.first_block = build_first_block(space)
        self.blocks = nn.Sequential(
            *[build_layer(space, g.in_ch, g.out_ch, g.stride, g.act, c.op, c.width) for g, c in arch.active_layers()]
        )
        # A stage of depth 0 is only legal when its first layer keeps the shape, so channels always chain.
        self.head = build_head(space, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first_block(self.stem(x))))


def build_model(arch: Architecture, num_classes: int | None = None) -> MBV2Net:
    return MBV2Net(arch, num_classes)
