"""Peak memory of one bilevel search step: PC-DARTS (K=4) vs DARTS at the same batch.

Method: each configuration runs in its own fresh subprocess (so allocator
caches and earlier runs do not mix); the child records its resident-set size
after imports and model construction (baseline) and the peak resident set
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after one architecture step and
one weight step. PyTorch CPU tensors live outside Python's allocator, which
is why ``tracemalloc`` would not see them; RSS does. The reported "step peak"
is peak minus baseline: the activations and gradients of the step.

    .venv/bin/python benchmarks/darts/bench_memory.py --batch 32 --out benchmarks/darts/memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def _rss_now_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(method: str, batch: int, C: int, cells: int, res: int) -> dict:
    import torch
    from torch import nn

    from tfnas.darts.architect import VirtualStep, arch_step
    from tfnas.darts.search import build_search_model
    from tfnas.train.common import build_optimizer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = {"space": "s0", "method": {"name": method}, "supernet": {"C": C, "num_cells": cells}}
    model, m = build_search_model(cfg, 10, 3)
    model = model.to(memory_format=torch.channels_last)
    crit = nn.CrossEntropyLoss()
    w_opt = build_optimizer(model.weight_parameters(), {"name": "sgd", "lr": 0.025, "momentum": 0.9})
    a_opt = build_optimizer(model.arch_parameters(), {"name": "adam", "lr": 3e-4})

    def batch_() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(batch, 3, res, res).contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (batch,))

    base = _rss_now_kb()
    arch_step(model, m, a_opt, batch_(), batch_(), crit, VirtualStep(0.025), w_opt)
    x, y = batch_()
    w_opt.zero_grad()
    with torch.no_grad():
        w = model.arch_weights()
    crit(model(x, w), y).backward()
    w_opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "method": method,
        "baseline_mib": base / 1024,
        "peak_mib": peak / 1024,
        "step_peak_mib": (peak - base) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--child", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.batch, a.C, a.cells, a.res)))
        return
    results = []
    for method in ("darts_1st", "pc_darts"):
        cmd = [sys.executable, __file__, "--child", method, "--batch", str(a.batch), "--C", str(a.C),
               "--cells", str(a.cells), "--res", str(a.res)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"batch": a.batch, "C": a.C, "cells": a.cells, "resolution": a.res, "pc_darts_K": 4},
        "results": results,
        "pc_over_darts_step_peak": results[1]["step_peak_mib"] / results[0]["step_peak_mib"],
    }
    print(json.dumps(report, indent=1))
    if a.out:
        from tfnas_base.atomic import atomic_write_json

        atomic_write_json(a.out, report)


if __name__ == "__main__":
    main()
