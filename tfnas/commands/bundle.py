"""``tfnas bundle``: write a profiling bundle (ONNX graphs + manifest) for a device without PyTorch."""

from __future__ import annotations

import argparse

from tfnas.latency.table import GRID_BUILDERS, make_grid
from tfnas.mbv2.bundle import write_bundle
from tfnas.mbv2.space import load_space


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grid",
        choices=sorted(GRID_BUILDERS),
        default="sparse",
        help="width grid: sparse (interpolated) or dense (every width; for validation)",
    )
    p.add_argument(
        "--align",
        type=int,
        default=None,
        help="sparse grid: alignment class of widths (default 4 for fp32, 16 for int8)",
    )
    p.add_argument(
        "--block",
        type=int,
        default=None,
        help="sparse grid: padding block of aligned widths (default: fp32 the device's SIMD block, read from the"
        " table's fingerprint: 8 with AVX2, 16 with AVX-512; int8 16)",
    )
    p.add_argument("--intervals", type=int, default=None, help="sparse grid: segments per class (default 8)")


def grid_from_args(args: argparse.Namespace):
    return make_grid(args.grid, args.precision, align=args.align, block=args.block, intervals=args.intervals)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="tfnas_imagenet", help="space name or YAML path")
    p.add_argument("--batch", type=int, default=1, help="deployment batch size")
    p.add_argument("--resolution", type=int, default=None, help="deployment resolution (default: the space's)")
    p.add_argument("--out", required=True, help="bundle folder (re-running completes it)")
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="the precision the device profiles the bundle at (the graphs stay fp32 sources: for int8 the"
        " device quantizes each one itself, so the bundle stays a few MB)",
    )
    add_grid_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from profilers.bundle import set_manifest_precision

    space = load_space(args.space)
    out = write_bundle(space, args.out, args.batch, args.resolution, grid_from_args(args), progress=not args.quiet)
    set_manifest_precision(out, args.precision)
    name = "LUT.json" if args.precision == "fp32" else f"LUT-{args.precision}.json"
    print(
        f"bundle written ({args.precision}): {out} (profile it with: python -m profilers run {out} --backend ort"
        f" --threads 1 --out {name})"
    )
    return 0
