"""``tfnas export ARCH.json --out model.onnx``: checked ONNX, parity-tested against PyTorch.

Optionally times the exported graph end to end on ONNX Runtime (``--measure``).
A checkpoint of trained weights (``--weights``) is loaded with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tfnas.arch import load_arch
from tfnas.errors import TfnasError
from tfnas.export.onnx import check_parity, export_onnx
from tfnas.models.mbv2_net import build_model
from tfnas.utils.checkpoint import classifier_classes, load_state_checked, load_weights_state
from tfnas.utils.flops import count_macs, count_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--weights", help="checkpoint with a 'model' state dict (optional; random init otherwise)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--num-classes", type=int, default=None, help="default: the --weights' class count, else the space's"
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--atol", type=float, default=1e-4, help="parity bound between PyTorch and ONNX Runtime")
    p.add_argument("--measure", action="store_true", help="time the exported graph with ONNX Runtime")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for --measure")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise TfnasError(f"--out {out} is a folder; give the ONNX file to write, e.g. {out / 'model.onnx'}")
    arch = load_arch(args.arch)
    num_classes, state = args.num_classes, None
    if args.weights:
        state = load_weights_state(args.weights)
        if num_classes is None:  # the trained weights know their class count; the space's default may differ
            num_classes = classifier_classes(state)
    model = build_model(arch, num_classes)
    if state is not None:
        load_state_checked(model, state, args.weights)
    res = arch.resolution
    shape = (args.batch, arch.space.in_channels, res, res)
    path = export_onnx(model, args.out, shape, opset=args.opset)
    diff = check_parity(model, path, shape, atol=args.atol)
    report = {
        "onnx": str(path),
        "input_shape": list(shape),
        "max_abs_diff": diff,
        "macs": count_macs(model, (1, *shape[1:])),
        "params": count_params(model),
        "num_classes": model.head.classifier.out_features,
    }
    if args.measure:
        from tfnas.latency.measure import measure_onnx

        m = measure_onnx(path, shape, "ort", threads=args.threads)
        report["latency_ms"] = m.latency_ms
        report["latency_statistic"] = m.statistic
        report["latency_median_ms"] = m.median_ms
        report["latency_cv"] = m.cv
    print(json.dumps(report, indent=1))
    return 0
