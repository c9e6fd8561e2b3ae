"""``tfnas train ARCH.json``: train a derived network from scratch (torchrun for many GPUs).

tfnas train runs/demo/arch.json --data generated --epochs 5 --out runs/train
torchrun --nproc_per_node 8 -m tfnas train arch.json --data /data/imagenet --epochs 300 --out runs/a
"""

from __future__ import annotations

import argparse
import dataclasses

from tfnas.arch import load_arch
from tfnas.training import TrainConfig, train_derived


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--out", required=True, help="output folder (checkpoints, metrics, model.pt)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name == "device":
            p.add_argument(flag, choices=("cpu", "cuda"), default=f.default, help="default: cuda when available")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            p.add_argument(flag, type=kind, default=f.default)


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    train_derived(load_arch(args.arch), cfg, args.out, resume=args.resume)
    return 0
