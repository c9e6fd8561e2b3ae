"""TF-NAS bi-sampling ablation side by side: one short search per weight-step sampling scheme.

The paper's variants (TF-NAS Table, operation-level ablation): a single Gumbel
path, and a Gumbel path plus a second one drawn by Gumbel / max-alpha /
min-alpha / uniform random over the ops the first path left. On generated
data, so the *accuracy says nothing about ImageNet*; what the run shows is how
the schemes differ in the way the paper describes: which ops the weight steps
train (coverage of the candidates), and how fast the op distribution
collapses onto one op per layer.

    nice -n 10 python benchmarks/search/bench_sampling.py --epochs 10 --warmup 2 --steps 12 \
        --out benchmarks/search/results/sampling_ablation.json
    # the same with a 10x architecture lr: the op distribution moves within the short run
    nice -n 10 python benchmarks/search/bench_sampling.py --epochs 10 --warmup 2 --steps 12 --arch-lr 0.1 \
        --out benchmarks/search/results/sampling_ablation_arch_lr_0.1.json

Per scheme: ``op_coverage`` (mean over layers of the share of candidate ops a
weight step trained at least ``min_visits`` times), ``visit_share_min`` (mean
over layers of the least-trained op's share of the visits; 1/8 = perfectly
even), ``max_op_prob`` and ``op_entropy`` (mean over layers at the end;
entropy normalised to [0, 1]), ``distinct_ops`` (how many different ops the
derived architecture uses), and the last epoch's held-out accuracy/loss.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import yaml

from profilers.lut import LatencyTable
from tfnas.mbv2.keys import space_signatures
from tfnas.mbv2.search import steps as steps_mod
from tfnas.mbv2.search.build import build_latency_model
from tfnas.mbv2.search.config import resolve_config
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.search.steps import weight_paths
from tfnas.mbv2.space import space_from_dict

SCHEMES = ("gumbel", "gumbel_gumbel", "max_alpha", "min_alpha", "gumbel_random")  # the paper's variants

SPACE = {  # the TF-NAS op set (8 ops) on a small CIFAR-sized net: minutes on a CPU
    "name": "bench_small",
    "input": {"resolution": 32, "channels": 3},
    "num_classes": 10,
    "stem": {"out": 16, "kernel": 3, "stride": 1, "act": "relu"},
    "first_block": {"kernel": 3, "mid": 16, "out": 16, "stride": 1, "se": True, "act": "relu"},
    "stages": [
        {"layers": 2, "out": 16, "stride": 2, "act": "relu"},
        {"layers": 2, "out": 24, "stride": 2, "act": "swish"},
        {"layers": 2, "out": 32, "stride": 2, "act": "swish"},
    ],
    "head": {"out": 64, "act": "swish", "dropout": 0.2},
    "ops": {
        f"k{k}_e{e}{'_se' if se else ''}": {"kernel": k, "expansion": e, "se": se}
        for k in (3, 5)
        for e in (3, 6)
        for se in (False, True)
    },
    "width": {"bound_factor": {3: 4, 6: 8}, "min_fraction": 0.5, "se_factor": {3: 1, 6: 2}},
}


def synthetic_table(space) -> LatencyTable:
    """Latency grows with width, spatial size, kernel and SE (only the target matters here)."""
    entries = {}
    for sig in space_signatures(space):
        if sig.width_range is None:
            widths, lat = [None], [0.05 + 1e-5 * sig.in_ch * sig.in_size**2]
        else:
            g, spec = sig.geometry, space.ops[sig.op]
            widths = list(range(sig.width_range[0], sig.width_range[1] + 1))
            cost = (g.in_ch + g.out_ch + spec.kernel**2 + (8 if spec.se else 0)) * (g.in_size // g.stride) ** 2 * 2e-6
            lat = [0.01 + w * cost for w in widths]
        n = len(widths)
        entries[sig.key] = {"widths": widths, "latency_ms": lat, "spread_ms": [0.0] * n, "cv": [0.0] * n,
                            "noisy": [False] * n, "repeats": [1] * n}  # fmt: skip
    fp = {"cpu_model": "synthetic", "cpu_count": 1, "threads": 1, "runtime": "synthetic", "runtime_version": "0",
          "provider": "none", "batch": 1, "precision": "fp32", "platform": "bench", "python": "3",
          "resolution": space.resolution}  # fmt: skip
    return LatencyTable(space.name, fp, {}, entries, complete=True)


def run_scheme(scheme: str, tmp: Path, args: argparse.Namespace) -> dict:
    space = space_from_dict(SPACE, "bench_small.yaml")
    (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
    synthetic_table(space).save(tmp / "lut.json")
    cfg = resolve_config({
        "name": f"ablation_{scheme}", "space": str(tmp / "space.yaml"), "lut": str(tmp / "lut.json"), "seed": args.seed,
        "data": {"source": "generated", "resolution": 32, "num_samples": args.samples, "held_out_fraction": 0.5},
        "search": {"epochs": args.epochs, "warmup_epochs": args.warmup, "batch_size": args.batch,
                   "steps_per_epoch": args.steps, "sampling": scheme},
        "runtime": {"progress": False, "threads": args.threads},
        "optim": {"arch": {"name": "adam", "lr": args.arch_lr, "betas": [0.5, 0.999], "weight_decay": 5.0e-4}},
    })  # fmt: skip
    fast, slow = build_latency_model(cfg, space).feasible_range()
    cfg["target_ms"] = fast + 0.5 * (slow - fast)

    visits: dict[int, Counter] = {}
    real_draw = steps_mod.draw_paths
    calls = [0]

    def counting_draw(names, logits, generator):
        paths = real_draw(names, logits, generator)
        calls[0] += 1  # one call per weight step; the warm-up steps (one Gumbel path) are not counted
        if calls[0] > args.warmup * args.steps:
            for path in paths:
                for layer, op in enumerate(path.tolist()):
                    visits.setdefault(layer, Counter())[op] += 1
        return paths

    steps_mod.draw_paths = counting_draw
    try:
        t0 = time.process_time()
        result = TFNASSearch(cfg, tmp / scheme).run()
        cpu_s = time.process_time() - t0
    finally:
        steps_mod.draw_paths = real_draw
    report = json.loads(result.report_path.read_text())
    last = report["history"][-1]
    probs = torch.tensor(last["op_probs"])
    n_ops = probs.shape[1]
    entropy = float((-(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(n_ops)).mean())
    layers = sorted(visits)
    coverage = [sum(visits[i][o] >= args.min_visits for o in range(n_ops)) / n_ops for i in layers]
    share_min = [min(visits[i][o] for o in range(n_ops)) / sum(visits[i].values()) for i in layers]
    ops = [c["op"] for st in report["arch"]["stages"] for c in st["layers"][: st["depth"]]]
    return {
        "scheme": scheme,
        "paths": list(weight_paths(scheme)),
        "op_coverage": sum(coverage) / len(coverage),
        "visit_share_min": sum(share_min) / len(share_min),
        "max_op_prob": float(probs.max(-1).values.mean()),
        "op_entropy": entropy,
        "distinct_ops": len(set(ops)),
        "held_acc_last_epoch": last.get("held_acc"),
        "held_loss_last_epoch": last.get("held_loss"),
        "train_loss_last_epoch": last.get("train_loss"),
        "target_hit": report["target_hit"],
        "cpu_s": cpu_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="weight steps per epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arch-lr", type=float, default=0.01, help="Adam lr of the op logits (reference: 0.01)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-visits", type=int, default=2)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for scheme in args.schemes:
            row = run_scheme(scheme, Path(d), args)
            rows.append(row)
            print(
                f"{scheme:<14} coverage {row['op_coverage']:.2f}  least-trained share {row['visit_share_min']:.3f}"
                f"  max p {row['max_op_prob']:.3f}  entropy {row['op_entropy']:.3f}  distinct ops"
                f" {row['distinct_ops']}  held acc {row['held_acc_last_epoch']:.3f}  ({row['cpu_s']:.0f} s CPU)",
                flush=True,
            )
    result = {
        "note": "generated data: accuracy here proves nothing about ImageNet",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "space": SPACE["name"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
