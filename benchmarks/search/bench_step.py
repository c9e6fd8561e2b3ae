"""Seconds per TF-NAS search step: bi-sampled weight step and mixed architecture step.

The setting of the reference figures: ImageNet space at 224 x 224, batch 8,
2 threads, all 8 candidate ops at full width (every op at its width bound).

    python benchmarks/search/bench_step.py --out benchmarks/search/results/step_bound.json
    python benchmarks/search/bench_step.py --widths default   # the search's starting widths

Each step is exactly what ``TFNASSearch`` runs (including SGD/Adam updates,
gradient clipping and the latency term); the median over ``--repeats`` after
``--warmup`` untimed steps is reported, with the machine's load average (a
shared machine inflates wall-clock timings; the process CPU time per step, with
OpenMP threads waiting passively, is the steadier figure to compare variants).
"""

from __future__ import annotations

# OMP_WAIT_POLICY is left to the caller and recorded in the result: PASSIVE is robust on a busy
# machine, the default (spin, then sleep) about 30% faster on an idle one; see README.md.
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

REFERENCE = {"weight_step_s": 1.26, "arch_step_s": 2.49}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--widths", choices=("bound", "default"), default="bound")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--mixed-op", choices=("loop", "fused"), default="loop")
    ap.add_argument("--autocast", choices=("bf16", "fp16"), default=None, help="runtime.autocast")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step of each kind")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args = ap.parse_args()

    from tfnas.mbv2.search.config import resolve_config
    from tfnas.mbv2.search.searcher import TFNASSearch

    torch.set_num_threads(args.threads)
    lut = Path(__file__).resolve().parents[2] / "latency_tables" / "tfnas_imagenet-ort-cpu-avx512-1t-b1-224.json"
    cfg = resolve_config(
        {
            "lut": str(lut),
            "target_ms": 5.0,
            "data": {"source": "generated", "resolution": args.resolution, "num_samples": 4 * args.batch},
            "search": {"batch_size": args.batch, "epochs": 2, "warmup_epochs": 1},
            "runtime": {
                "threads": args.threads,
                "channels_last": not args.no_channels_last,
                "progress": False,
                "mixed_op": args.mixed_op,
                "autocast": args.autocast,
            },
        }
    )
    search = TFNASSearch(cfg, "/tmp/tfnas_bench_step")
    model = search.model
    if args.widths == "bound":
        for layer in model.layers:
            for i, op in enumerate(layer.ops):
                layer.set_width(i, op.bound)
        search._op_table = search.lat.op_table(model.widths())
    mf = search.memory_format
    x = torch.randn(args.batch, 3, args.resolution, args.resolution).to(memory_format=mf)
    y = torch.randint(0, search.data.num_classes, (args.batch,))

    def weight() -> None:
        search.weight_step(x, y, 0, warm=False)

    def arch() -> None:
        search.arch_step(x, y, 0, epoch=1)

    result = {}
    for name, fn in (("weight_step_s", weight), ("arch_step_s", arch)):
        for _ in range(args.warmup):
            fn()
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            print(name)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        result[name] = statistics.median(times)
        result[name[:-2] + "_cpu_s"] = statistics.median(cpu)
        result[name + "_all"] = times
    out = {
        "setting": {
            "batch": args.batch,
            "resolution": args.resolution,
            "threads": args.threads,
            "widths": args.widths,
            "channels_last": not args.no_channels_last,
            "mixed_op": args.mixed_op,
            "autocast": args.autocast,
            "ops": len(model.op_names),
            "paths_per_weight_step": list(search.paths),
        },
        **result,
        "reference": REFERENCE,
        "ratio_weight": result["weight_step_s"] / REFERENCE["weight_step_s"],
        "ratio_arch": result["arch_step_s"] / REFERENCE["arch_step_s"],
        "loadavg": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "<default>"),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("_all")}, indent=1))
    if args.out:
        from tfnas_base.atomic import atomic_write_json

        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
