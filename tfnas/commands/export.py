"""``tfnas export ARCH.json --out model.onnx``: checked ONNX, parity-tested against PyTorch.

Optionally times the exported graph end to end on ONNX Runtime (``--measure``).
A checkpoint of trained weights (``--weights``) is loaded with ``weights_only=True``.

``--precision int8 --calibration-data SOURCE``: ``--out`` is the statically quantized model
(``tfnas.export.quantize``; the fp32 model is kept beside it as ``<out>.fp32.onnx``), calibrated on
images of SOURCE (``generated``, a CIFAR-10 or ImageFolder folder), checked against the fp32 model
on held-out images (top-1 agreement, accuracy of both) and timed here beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tfnas.errors import TfnasError
from tfnas.export.onnx import check_parity, export_onnx
from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.net import build_model
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
    q = p.add_argument_group("int8 (static quantization, ONNX Runtime QDQ)")
    q.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="int8: --out is the quantized model")
    q.add_argument(
        "--calibration-data",
        default=None,
        metavar="SOURCE",
        help="int8 (required): images that set the activation ranges: 'generated', a CIFAR-10 folder or an"
        " ImageFolder tree (the data the weights were trained on); held-out images of it check the result",
    )
    q.add_argument("--calibration-samples", type=int, default=64, help="calibration images (training split)")
    q.add_argument("--held-out", type=int, default=500, help="held-out images for the fp32/int8 agreement check")
    q.add_argument("--num-samples", type=int, default=2000, help="size of generated data (as tfnas train's)")
    q.add_argument("--data-seed", type=int, default=0, help="seed of generated data and of the sample choice")
    q.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="7-bit weights: auto = on for x86 without VNNI (this machine's ISA), as the int8 tables",
    )
    q.add_argument("--rounds", type=int, default=5, help="int8: interleaved timing rounds of both models")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise TfnasError(f"--out {out} is a folder; give the ONNX file to write, e.g. {out / 'model.onnx'}")
    if args.precision == "int8" and not args.calibration_data:
        raise TfnasError(
            "--precision int8 needs --calibration-data: 'generated', or the CIFAR-10 / ImageFolder folder the"
            " weights were trained on (its images set the activation ranges)"
        )
    if args.precision == "fp32" and args.calibration_data:
        raise TfnasError("--calibration-data is for --precision int8")
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
    fp32_out = out.with_name(out.stem + ".fp32.onnx") if args.precision == "int8" else out
    path = export_onnx(model, fp32_out, shape, opset=args.opset)
    diff = check_parity(model, path, shape, atol=args.atol)
    report = {
        "onnx": str(path),
        "input_shape": list(shape),
        "max_abs_diff": diff,
        "macs": count_macs(model, (1, *shape[1:])),
        "params": count_params(model),
        "num_classes": model.head.classifier.out_features,
    }
    if args.precision == "int8":
        report.update(_int8(args, path, out, shape, report["num_classes"]))
    elif args.measure:
        from tfnas.latency.measure import measure_onnx

        m = measure_onnx(path, shape, "ort", threads=args.threads)
        report["latency_ms"] = m.latency_ms
        report["latency_statistic"] = m.statistic
        report["latency_median_ms"] = m.median_ms
        report["latency_cv"] = m.cv
    print(json.dumps(report, indent=1))
    return 0


def _int8(args: argparse.Namespace, fp32_path: Path, out: Path, shape: tuple, num_classes: int) -> dict:
    """Quantize ``fp32_path`` into ``out`` on the calibration data; agreement on held-out images; both timed."""
    from profilers.quantize import default_settings
    from tfnas.export.quantize import agreement, load_quant_data, quantize_onnx, quantized_report
    from tfnas.latency.measure import time_fp32_and_int8

    overrides = {} if args.reduce_range == "auto" else {"reduce_range": args.reduce_range == "on"}
    settings = default_settings(**overrides, calibration_samples=max(1, args.calibration_samples))
    data = load_quant_data(
        args.calibration_data, shape[-1], num_classes, args.calibration_samples, args.held_out, args.num_samples,
        args.data_seed,
    )  # fmt: skip
    path = quantize_onnx(fp32_path, out, data.calibration, shape[0], settings)
    check = agreement(fp32_path, path, data, shape[0])
    result = {
        "onnx": str(path),
        "onnx_fp32": str(fp32_path),
        "precision": "int8",
        "quantization": {**settings.to_dict(), "recipe": settings.describe()},
        "calibration": {"source": data.source, "samples": int(len(data.calibration))},
        "quantized_graph": quantized_report(path),
        "held_out": check,
        "latency": time_fp32_and_int8(fp32_path, path, shape, args.threads, max(1, args.rounds)),
    }
    lat = result["latency"]
    print(
        f"int8: top-1 agreement with fp32 {check['top1_agreement']:.1%} on {check['samples']} held-out images"
        f" ({check['split']}); accuracy fp32 {check['fp32_accuracy']:.1%}, int8 {check['int8_accuracy']:.1%};"
        f" latency fp32 {lat['fp32_ms']:.3f} ms, int8 {lat['int8_ms']:.3f} ms ({lat['int8_over_fp32']:.2f}x) on"
        f" {lat['device']}",
        file=sys.stderr,
    )
    return result
