"""Seconds per weight step and per architecture step of the DARTS supernet.

Usage (the recorded numbers in README.md come from this command):

    .venv/bin/python benchmarks/darts/bench_step.py --method darts_1st --C 16 --cells 8 --batch 32 \
        --res 32 --threads 2 --steps 5 --out benchmarks/darts/step_time.json

Random inputs (the data pipeline is not what is measured); one warm-up step is
excluded; the median over ``--steps`` steps is reported with min, max, every
sample and the load average before/after: two OpenMP threads slow down many
times over when other processes occupy the cores, so a busy machine shows up
as a large max/min spread and a load average above the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from tfnas.darts.architect import VirtualStep, arch_step
from tfnas.darts.search import build_search_model
from tfnas.train.common import build_optimizer


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="darts_1st")
    ap.add_argument("--space", default="s0")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--partial-k", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method_cfg = {"name": args.method}
    if args.partial_k:
        method_cfg["partial_k"] = args.partial_k
    cfg = {"space": args.space, "method": method_cfg, "supernet": {"C": args.C, "num_cells": args.cells}}
    model, method = build_search_model(cfg, 10, 3)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    crit = nn.CrossEntropyLoss()
    w_opt = build_optimizer(model.weight_parameters(), {"name": "sgd", "lr": 0.025, "momentum": 0.9})
    a_opt = build_optimizer(model.arch_parameters(), {"name": "adam", "lr": 3e-4, "betas": [0.5, 0.999]})

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, args.res, args.res).contiguous(memory_format=fmt)
        return x, torch.randint(0, 10, (args.batch,))

    def w_step() -> None:
        x, y = batch()
        with torch.no_grad():
            w = model.arch_weights()
        w_opt.zero_grad(set_to_none=True)
        crit(model(x, w), y).backward()
        nn.utils.clip_grad_norm_(list(model.weight_parameters()), 5.0)
        w_opt.step()

    def a_step() -> None:
        arch_step(model, method, a_opt, batch(), batch(), crit, VirtualStep(0.025), w_opt)

    model.train()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"weight": [], "arch": []}
    for i in range(args.steps + 1):
        for name, fn in (("arch", a_step), ("weight", w_step)):
            t0 = time.perf_counter()
            fn()
            if i > 0:
                times[name].append(time.perf_counter() - t0)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": os.getloadavg(),
        **{
            f"sec_per_{k}_step": {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
            for k, v in times.items()
        },
    }
    print(json.dumps(result, indent=1))
    if args.out:
        from tfnas_base.atomic import atomic_write_json

        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
