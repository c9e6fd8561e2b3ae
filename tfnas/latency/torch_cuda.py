"""PyTorch-CUDA latency backend, for GPUs without TensorRT: times any ``nn.Module``.

It needs torch, so it lives on the tfnas side: a family profiles its op modules directly (no ONNX bundle;
``mbv2.cuda_profile``) and writes the same LUT format. Every sample is the GPU time between two CUDA
events around one forward pass; the statistics (outlier rejection, stopping rule, noise flag) are the
profilers' own.
"""

from __future__ import annotations

import torch
from torch import nn

from profilers.fingerprint import current_fingerprint
from profilers.timing import Measurement, TimingProtocol, measure
from tfnas.errors import TfnasError


def require_cuda() -> None:
    if not torch.cuda.is_available():
        raise TfnasError("backend torch-cuda needs a CUDA GPU, and torch.cuda.is_available() is False here")


def measure_module(
    module: nn.Module, input_shape: tuple[int, ...], protocol: TimingProtocol | None = None, device: str = "cuda"
) -> Measurement:
    """Median GPU time (ms) of ``module`` on a random input; re-measured while noisy, like the profilers."""
    require_cuda()
    protocol = protocol or TimingProtocol()
    torch.backends.cudnn.benchmark = True
    module = module.eval().to(device)
    x = torch.randn(input_shape, device=device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def sample_ms() -> float:  # device time of one forward, not the host's view of an async launch
        begin.record()
        module(x)
        end.record()
        end.synchronize()
        return float(begin.elapsed_time(end))

    with torch.inference_mode():
        return measure(lambda: module(x), protocol, sample_ms=sample_ms)


def gpu_fingerprint(batch: int, resolution: int, precision: str = "fp32") -> dict:
    return current_fingerprint(
        threads=1,
        provider="CUDA",
        batch=batch,
        resolution=resolution,
        precision=precision,
        runtime="torch",
        runtime_version=torch.__version__,
        gpu_model=torch.cuda.get_device_name(0),
        gpu_name=torch.cuda.get_device_name(0),
        gpu_compute_capability="{}.{}".format(*torch.cuda.get_device_capability(0)),
        gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        cuda_version=str(torch.version.cuda),
        cuda=str(torch.version.cuda),
        cudnn=str(torch.backends.cudnn.version()),
    )
