"""``tfnas arch ARCH.json``: validate a derived architecture and report FLOPs and parameters."""

from __future__ import annotations

import argparse
import json

from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.net import build_model
from tfnas.utils.flops import count_macs, count_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")


def run(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    model = build_model(arch)
    res = arch.resolution
    summary = {
        "space": arch.space.name,
        "resolution": res,
        "depths": arch.depths,
        "layers": [
            {"stage": g.stage + 1, "layer": g.index + 1, "op": c.op, "width": c.width} for g, c in arch.active_layers()
        ],
        "macs": count_macs(model, (1, arch.space.in_channels, res, res)),
        "params": count_params(model),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{args.arch}: space {arch.space.name}, {res}x{res}, depths {arch.depths}")
    for row in summary["layers"]:
        print(f"  stage {row['stage']} layer {row['layer']}: {row['op']:<10} width {row['width']}")
    print(f"FLOPs (multiply-adds): {summary['macs'] / 1e6:.1f} M   params: {summary['params'] / 1e6:.2f} M")
    return 0
