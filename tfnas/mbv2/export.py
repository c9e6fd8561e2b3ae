"""``export_arch``: a derived architecture as a checked ONNX file, fp32 or int8 (``tfnas export``'s library call).

The network is built from the architecture (with trained weights, if given), exported with the shared exporter
(``tfnas.export``: ONNX checker, PyTorch/ONNX Runtime parity), and optionally timed here. ``int8``: the file is the
statically quantized model (the fp32 one is kept beside it as ``<out>.fp32.onnx``), checked against the fp32 model
on held-out images and timed beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tfnas.errors import TfnasError
from tfnas.export.onnx import check_parity, export_onnx
from tfnas.export.quantize import Int8Options, quantize_export
from tfnas.latency.measure import measure_onnx, time_fp32_and_int8
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.net import build_model
from tfnas.utils.checkpoint import classifier_classes, load_state_checked, load_weights_state
from tfnas.utils.flops import count_macs, count_params


def build_with_weights(
    arch: Architecture, weights: str | Path | None = None, num_classes: int | None = None
) -> nn.Module:
    """``arch``'s network, with the weights of ``weights`` (a ``model.pt``, a run's checkpoint or a state dict).

    ``num_classes``: default the weights' class count, else the space's."""
    state = None
    if weights:
        state = load_weights_state(weights)
        if num_classes is None:  # the trained weights know their class count; the space's default may differ
            num_classes = classifier_classes(state)
    model = build_model(arch, num_classes)
    if state is not None:
        load_state_checked(model, state, weights)
    return model


def _latency(path: Path, shape: tuple[int, ...], threads: int) -> dict[str, Any]:
    """The exported fp32 graph timed end to end on ONNX Runtime (``tfnas export --measure``)."""
    m = measure_onnx(path, shape, "ort", threads=threads)
    return {
        "latency_ms": m.latency_ms,
        "latency_statistic": m.statistic,
        "latency_median_ms": m.median_ms,
        "latency_cv": m.cv,
    }


def export_arch(
    arch: Architecture | str | Path,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    batch: int = 1,
    num_classes: int | None = None,
    opset: int = 17,
    atol: float = 1e-4,
    measure: bool = False,
    threads: int = 1,
    int8: Int8Options | None = None,
) -> dict[str, Any]:
    """Export ``arch`` (an architecture or its JSON file) to ``out``; returns the report ``tfnas export`` prints.

    fp32: ``out`` is the checked graph, within ``atol`` of PyTorch; ``measure`` times it (``threads``).
    ``int8``: ``out`` is the quantized graph, the report adds its agreement with fp32 and both latencies."""
    out = Path(out)
    if out.is_dir():
        raise TfnasError(f"--out {out} is a folder; give the ONNX file to write, e.g. {out / 'model.onnx'}")
    arch = arch if isinstance(arch, Architecture) else load_arch(arch)
    model = build_with_weights(arch, weights, num_classes)
    res = arch.resolution
    shape = (batch, arch.space.in_channels, res, res)
    fp32_out = out.with_name(out.stem + ".fp32.onnx") if int8 is not None else out
    path = export_onnx(model, fp32_out, shape, opset=opset)
    report: dict[str, Any] = {
        "onnx": str(path),
        "input_shape": list(shape),
        "max_abs_diff": check_parity(model, path, shape, atol=atol),
        "macs": count_macs(model, (1, *shape[1:])),
        "params": count_params(model),
        "num_classes": model.head.classifier.out_features,
    }
    if int8 is not None:
        report.update(quantize_export(path, out, shape, report["num_classes"], int8))
        report["latency"] = time_fp32_and_int8(path, out, shape, threads, max(1, int8.rounds))
    elif measure:
        report.update(_latency(path, shape, threads))
    return report
