"""channels_last everywhere except the strided 1x1 convs whose backward crashes torch 2.14 on AVX2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch
from torch import nn

from tfnas.darts.ops import FactorizedReduce
from tfnas.utils.memory_format import apply_memory_format


def _is_channels_last_weight(conv: nn.Conv2d) -> bool:
    # a 1x1 weight is "contiguous" in both layouts; its strides tell them apart
    o, i = conv.weight.shape[:2]
    return conv.weight.stride() == (i, 1, i, i) and i > 1


def test_narrow_strided_1x1_convs_stay_nchw_and_the_rest_goes_channels_last():
    model = nn.Sequential(FactorizedReduce(4, 4), nn.Conv2d(4, 8, 3, padding=1), FactorizedReduce(8, 8))
    apply_memory_format(model, channels_last=True)
    narrow = model[0]
    assert not _is_channels_last_weight(narrow.conv_1) and not _is_channels_last_weight(narrow.conv_2)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert _is_channels_last_weight(model[2].conv_1)  # 8 input channels: safe, stays channels_last


def test_guarded_model_computes_what_the_nchw_model_computes():
    torch.manual_seed(0)
    ref = FactorizedReduce(3, 4).train()
    guarded = FactorizedReduce(3, 4).train()
    guarded.load_state_dict(ref.state_dict())
    apply_memory_format(guarded, channels_last=True)
    apply_memory_format(guarded, channels_last=True)  # twice: one hook only
    x = torch.randn(2, 3, 9, 9)
    y_ref = ref(x)
    y = guarded(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y, y_ref)
    y.sum().backward()
    y_ref.sum().backward()
    torch.testing.assert_close(guarded.conv_1.weight.grad, ref.conv_1.weight.grad)
    assert len(guarded.conv_1._forward_pre_hooks) == 1


def test_pc_darts_narrow_reduction_trains_in_channels_last_on_an_avx2_onednn():
    """The crash of issue 9: oneDNN limited to AVX2 (as on hosts without AVX-512), one thread."""
    code = textwrap.dedent(
        """
        import torch
        from torch import nn
        from tfnas.darts.ops import FactorizedReduce
        from tfnas.utils.memory_format import apply_memory_format
        torch.set_num_threads(1)
        for c in range(2, 8):
            m = apply_memory_format(nn.Sequential(FactorizedReduce(c, 2 * c)), channels_last=True)
            x = torch.randn(4, c, 16, 16, requires_grad=True).contiguous(memory_format=torch.channels_last)
            for _ in range(10):
                m(x).sum().backward()
        print("survived")
        """
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
