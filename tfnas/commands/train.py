"""``tfnas train ARCH.json``: train a derived network from scratch (torchrun for many GPUs).

tfnas train runs/demo/arch.json --data generated --epochs 5 --out runs/train
tfnas train arch.json --config train.yaml --out runs/a      (YAML of the same keys; flags override it)
torchrun --nproc_per_node 8 -m tfnas train arch.json --data /data/imagenet --epochs 300 --out runs/a
"""

from __future__ import annotations

import argparse
import os
import typing

from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.train import TrainConfig, load_train_config, train_derived


def _flag_type(annotation: typing.Any) -> type:
    """int / float / str of a field annotation such as ``int | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = args[0]
    return kind if kind in (int, float) else str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--out", required=True, help="output folder (checkpoints, metrics, model.pt)")
    p.add_argument("--config", default=None, help="YAML with any of the settings below (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a tfnas run")
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from the architecture's slice of this TF-NAS search run's supernet")  # fmt: skip
    for name, f in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = f"default: {f.default}"
        if f.annotation is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=default)
        elif name == "device":
            p.add_argument(flag, choices=("cpu", "cuda"), default=None, help="default: cuda when available")
        else:
            p.add_argument(flag, type=_flag_type(f.annotation), default=None, help=default)


def run(args: argparse.Namespace) -> int:
    from tfnas.config import apply_overrides, validate
    from tfnas.train.common import claim_run_dir

    flags = {k: getattr(args, k) for k in TrainConfig.model_fields}
    if args.config:
        cfg = load_train_config(args.config, flags)
    else:
        cfg = validate(TrainConfig, apply_overrides({}, flags), "tfnas train")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun the first process owns the folder
        claim_run_dir(args.out, args.resume, args.force)
    train_derived(load_arch(args.arch), cfg, args.out, resume=args.resume, init_from=args.init_from)
    return 0
