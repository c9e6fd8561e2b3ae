"""PyTorch-CUDA latency backend, for GPUs without TensorRT.

It needs torch, so it lives on the tfnas side: profiling builds each signature's
module directly (no ONNX bundle) and writes the same LUT format. Every sample is
the GPU time between two CUDA events around one forward pass; the statistics
(outlier rejection, stopping rule, noise flag) are the profilers' own.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from profilers.fingerprint import current_fingerprint
from profilers.lut import LatencyTable
from profilers.timing import Measurement, TimingProtocol, measure
from tfnas.errors import TfnasError
from tfnas.latency.bundle import plan_bundle
from tfnas.latency.table import WidthGrid
from tfnas.mbv2.keys import build_signature_module
from tfnas.mbv2.space import MBV2Space
from tfnas_base.errors import UserError
from tfnas_base.progress import progress as progress_bar


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


def profile_space(
    space: MBV2Space,
    out_path: str | Path,
    batch: int = 32,
    resolution: int | None = None,
    grid: WidthGrid | None = None,
    protocol: TimingProtocol | None = None,
    resume: bool = True,
    progress: bool = True,
) -> LatencyTable:
    """Build a LUT of ``space`` on this GPU (resumable: points already in ``out_path`` are kept)."""
    require_cuda()
    res = resolution or space.resolution
    grid = grid or WidthGrid()
    protocol = protocol or TimingProtocol()
    out = Path(out_path)
    fp = gpu_fingerprint(batch, res)
    if resume and out.exists():
        try:
            table = LatencyTable.load(out)
        except UserError as exc:  # the same hint as the ONNX profilers' resume
            raise TfnasError(f"cannot resume from {out}: {exc}; use --no-resume to start over") from None
        diffs = table.fingerprint_mismatch(fp)
        if diffs or table.protocol != protocol.to_dict():
            raise TfnasError(f"cannot resume {out}: measured with other settings {diffs}; use another --out")
    else:
        table = LatencyTable(space.name, fp, protocol.to_dict(), meta={"backend": "torch-cuda"}, source=str(out))
    table.meta["bundle_meta"] = {"grid": grid.to_dict(), "space_source": space.source}
    plan = [(s, w) for s, w in plan_bundle(space, grid, res) if not table.measured(s.key, w)]
    for sig, width in progress_bar(plan, desc="torch-cuda", enabled=None if progress else False, unit="op"):
        m = measure_module(build_signature_module(space, sig, width), sig.input_shape(batch), protocol)
        table.add_measurement(sig.key, width, m)
        table.save(out)
    table.complete = True
    table.save(out)
    return table
