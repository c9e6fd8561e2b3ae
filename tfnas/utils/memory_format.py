"""Memory layout of models: channels_last where it is safe.

channels_last makes oneDNN's depthwise convolutions 3-4x faster on CPU, so the
searches and trainers use it by default. One case is unsafe: on torch 2.14 CPU
(oneDNN with AVX2, i.e. hosts without AVX-512) the backward pass of a 1x1
convolution with stride > 1 and 2-7 input channels in channels_last corrupts the
heap (``double free or corruption``, the process aborts). DARTS' FactorizedReduce
builds exactly such convolutions when a cell is narrow (PC-DARTS with K=4 on
C=8 gives ``Conv2d(2, 2, 1, stride=2)``). Those few convolutions run in NCHW:
their weights are stored contiguous and their input is made contiguous, the rest
of the network stays channels_last. The ONNX graph and the maths are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

# Input channel counts at which the strided 1x1 backward crashed (probed 1..16 on torch 2.14.1, AVX2).
UNSAFE_MAX_IN_CHANNELS = 7
_GUARD_ATTR = "_tfnas_nchw_guard"


def unsafe_in_channels_last(conv: nn.Module) -> bool:
    """True for the convolutions whose channels_last backward crashes (strided 1x1, few input channels)."""
    if not isinstance(conv, nn.Conv2d):
        return False
    return tuple(conv.kernel_size) == (1, 1) and max(conv.stride) > 1 and conv.in_channels <= UNSAFE_MAX_IN_CHANNELS


def _input_to_nchw(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    return (x.contiguous(), *rest)


def apply_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` in channels_last (except the unsafe convs, kept NCHW) or in plain NCHW."""
    if not channels_last:
        return model.to(memory_format=torch.contiguous_format)
    model = model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if not unsafe_in_channels_last(m):
            continue
        # clone(): for a 1x1 kernel .contiguous() is a no-op that keeps the channels_last strides.
        m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
        if not getattr(m, _GUARD_ATTR, False):
            m.register_forward_pre_hook(_input_to_nchw)
            setattr(m, _GUARD_ATTR, True)
    return model
