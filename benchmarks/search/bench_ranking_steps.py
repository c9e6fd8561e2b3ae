"""Is the supernet's poor ranking a steps budget? Kendall tau of inherited vs stand-alone top-1 as training goes on.

The issue-22 quality benchmark found that the shared supernet, after the search's 420 steps, learns the task (40-44%
held-out on shapes:0.3) but does not rank its 20 compared networks (tau -0.20..+0.18). Hypothesis: it is
under-trained. This script refutes or supports it: it trains the same shared supernet (the search's space, data,
split and seed, read from a finished search run) with the warm-up's weight steps (a uniformly random op per layer,
sinks mixed uniformly; ``--sample-depth``: a random depth per stage, the network cut there) for ``--steps`` steps at a constant lr, and at each milestone scores every compared network
by its slice (inherited top-1 on the search's held-out split, shuffled batches) and takes the Kendall tau against
their stand-alone top-1 (the mean over the benchmark's trainings, from its ``summary.json``).

    python benchmarks/search/bench_ranking_steps.py --run benchmarks/search/results/quality_shared/shapes_0.3 \\
        --steps 1680 --milestones 210,420,840,1680 --out benchmarks/search/results/ranking_steps_shapes.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tfnas.data import make_loader, set_loader_epoch  # noqa: E402
from tfnas.mbv2.arch import Architecture  # noqa: E402
from tfnas.mbv2.search.build import search_data  # noqa: E402
from tfnas.mbv2.search.config import resolve_config  # noqa: E402
from tfnas.mbv2.search.inherit import inherited_accuracy, kendall_tau  # noqa: E402
from tfnas.mbv2.search.supernet import TFNASSupernet  # noqa: E402
from tfnas.mbv2.space import load_space  # noqa: E402
from tfnas.utils.io import read_json  # noqa: E402
from tfnas_base.atomic import atomic_write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a task folder of bench_quality.py (searches/, compare/, ...)")
    p.add_argument("--search", default="tfnas_s0", help="the search whose config (space, data, seed) is reused")
    p.add_argument("--steps", type=int, default=1680)
    p.add_argument("--milestones", default="210,420,840,1680")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--sample-depth", action="store_true",
                   help="each step also draws a depth per stage (the slice runs cut there; the search mixes sinks)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = Path(args.run)
    cfg = resolve_config(read_json(task / "searches" / args.search / "config.json", "search config"))
    data = search_data(cfg)
    space = load_space(cfg.space)
    plan = read_json(task / "compare" / "plan.json", "comparison plan")
    archs = {n["name"]: Architecture.from_dict(n["arch"], n["name"], space) for n in plan["networks"]}
    summary = read_json(task.parent / "summary.json", "benchmark summary")
    trainings = summary["tasks"][cfg.data.source]["trainings"]
    standalone = {n: statistics.mean(r["test_acc"] for t in trainings for r in t["networks"] if r["name"] == n)
                  for n in archs}  # fmt: skip
    torch.manual_seed(cfg.seed)
    s = cfg.search
    model = TFNASSupernet(space, data.num_classes, s.ops, s.bn, s.op_weights, s.aligned_start).train()
    opt = torch.optim.SGD(model.weight_parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = make_loader(data.train, s.batch_size, shuffle=True, seed=cfg.seed)
    milestones = sorted(int(m) for m in args.milestones.split(","))
    rows, step, epoch, t0 = [], 0, 0, time.perf_counter()
    n_layers, n_ops = space.num_layers(), len(space.ops)
    while step < args.steps:
        set_loader_epoch(loader, epoch)
        for x, y in loader:
            choice = torch.randint(0, n_ops, (n_layers,), generator=gen).tolist()
            if args.sample_depth:
                depths = [int(torch.randint(md, b - a + 1, (1,), generator=gen)) for md, (a, b) in
                          zip(model.min_depths, model.stage_slices)]  # fmt: skip
                widths = [layer._w[o] for layer, o in zip(model.layers, choice)]
                out = model.forward_arch(x, choice, widths, depths)
            else:
                out = model.forward_paths(x, choice)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
            opt.step()
            step += 1
            if step in milestones:
                inherited = {n: inherited_accuracy(model, data.held_out, a, s.batch_size, cfg.seed)
                             for n, a in archs.items()}  # fmt: skip
                names = sorted(archs)
                tau = kendall_tau([inherited[n] for n in names], [standalone[n] for n in names])
                row = {"step": step, "kendall_tau": tau, "n": len(names), "seconds": round(time.perf_counter() - t0),
                       "inherited_range": [min(inherited.values()), max(inherited.values())], "inherited": inherited}  # fmt: skip
                rows.append(row)
                print({k: v for k, v in row.items() if k != "inherited"}, flush=True)
            if step >= args.steps:
                break
        epoch += 1
    atomic_write_json(args.out, {"command": " ".join(sys.argv), "args": vars(args), "standalone": standalone,
                                 "rows": rows, "torch": torch.__version__})  # fmt: skip


if __name__ == "__main__":
    main()
