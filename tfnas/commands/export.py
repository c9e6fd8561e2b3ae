"""``tfnas export ARCH.json --out model.onnx``: checked ONNX, parity-tested against PyTorch.

Optionally times the exported graph end to end on ONNX Runtime (``--measure``).
A checkpoint of trained weights (``--weights``) is loaded with ``weights_only=True``.

``--precision int8 --calibration-data SOURCE``: ``--out`` is the statically quantized model
(``tfnas.export.quantize``; the fp32 model is kept beside it as ``<out>.fp32.onnx``), calibrated on
images of SOURCE (``generated``, a CIFAR-10 or ImageFolder folder), checked against the fp32 model
on held-out images (top-1 agreement, accuracy of both) and timed here beside it. The library call is
``tfnas.mbv2.export.export_arch``.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfnas.errors import TfnasError
from tfnas.export.quantize import Int8Options
from tfnas.mbv2.export import export_arch


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
    q.add_argument("--calibration-samples", type=int, default=Int8Options.calibration_samples,
                   help="calibration images (training split)")  # fmt: skip
    q.add_argument("--held-out", type=int, default=Int8Options.held_out,
                   help="held-out images for the fp32/int8 agreement check")  # fmt: skip
    q.add_argument("--num-samples", type=int, default=Int8Options.num_samples,
                   help="size of generated data (as tfnas train's)")  # fmt: skip
    q.add_argument("--data-seed", type=int, default=Int8Options.data_seed,
                   help="seed of generated data and of the sample choice")  # fmt: skip
    q.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="7-bit weights: auto = on for x86 without VNNI (this machine's ISA), as the int8 tables",
    )
    q.add_argument(
        "--rounds", type=int, default=Int8Options.rounds, help="int8: interleaved timing rounds of both models"
    )


def _int8_options(args: argparse.Namespace) -> Int8Options | None:
    if args.precision == "int8" and not args.calibration_data:
        raise TfnasError(
            "--precision int8 needs --calibration-data: 'generated', or the CIFAR-10 / ImageFolder folder the"
            " weights were trained on (its images set the activation ranges)"
        )
    if args.precision == "fp32":
        if args.calibration_data:
            raise TfnasError("--calibration-data is for --precision int8")
        return None
    reduce_range = None if args.reduce_range == "auto" else args.reduce_range == "on"
    return Int8Options(args.calibration_data, args.calibration_samples, args.held_out, args.num_samples,
                       args.data_seed, reduce_range, args.rounds)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    report = export_arch(
        args.arch, args.out, weights=args.weights, batch=args.batch, num_classes=args.num_classes, opset=args.opset,
        atol=args.atol, measure=args.measure, threads=args.threads, int8=_int8_options(args),
    )  # fmt: skip
    if "held_out" in report:
        check, lat = report["held_out"], report["latency"]
        print(
            f"int8: top-1 agreement with fp32 {check['top1_agreement']:.1%} on {check['samples']} held-out images"
            f" ({check['split']}); accuracy fp32 {check['fp32_accuracy']:.1%}, int8 {check['int8_accuracy']:.1%};"
            f" latency fp32 {lat['fp32_ms']:.3f} ms, int8 {lat['int8_ms']:.3f} ms ({lat['int8_over_fp32']:.2f}x) on"
            f" {lat['device']}",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=1))
    return 0
