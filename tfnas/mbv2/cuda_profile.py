"""A latency table of an MBV2 space on this GPU with PyTorch-CUDA (GPUs without TensorRT).

Each signature's module is built and timed directly (``tfnas.latency.torch_cuda``, no ONNX bundle); the
table has the same format as the profilers' own.
"""

from __future__ import annotations

from pathlib import Path

from profilers.lut import LatencyTable
from profilers.timing import TimingProtocol
from tfnas.errors import TfnasError
from tfnas.latency.table import WidthGrid
from tfnas.latency.torch_cuda import gpu_fingerprint, measure_module, require_cuda
from tfnas.mbv2.bundle import plan_bundle
from tfnas.mbv2.keys import build_signature_module
from tfnas.mbv2.space import MBV2Space
from tfnas_base.errors import UserError
from tfnas_base.progress import progress as progress_bar


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
