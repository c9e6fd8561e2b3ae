"""``tfnas compare``: a searched network against random and uniform networks of the same latency.

    tfnas compare runs/search/a [runs/search/b ...] --data shapes --resolution 16 --out runs/compare
                  [--lut TABLE] [--config compare.yaml] [--random 10] [--epochs 4] [--jobs 2] [--supernet RUN]

Each positional argument is a search run folder (its arch.json) or an architecture file. The budget is
the first one's predicted latency on the table (``--lut``, default: the table its search used). The
supernet of a search run (``--supernet``, default: the first argument when it is a TF-NAS search run
folder with a checkpoint) scores every network before training; the Kendall tau of those inherited
accuracies against the stand-alone ones says how well the supernet ranks networks.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("searched", nargs="+", help="search run folders or architecture JSON files")
    p.add_argument("--out", required=True, help="comparison folder (resumable: a rerun continues it)")
    p.add_argument("--lut", default=None, help="latency table (default: the one the first search used)")
    p.add_argument("--config", default=None, help="YAML of compare settings (tfnas.mbv2.search.compare.CompareConfig)")
    p.add_argument("--data", default=None, help="generated | shapes[:difficulty] | digits | a dataset folder")
    p.add_argument("--resolution", type=int, default=None, help="training resolution")
    p.add_argument("--random", type=int, default=None, help="random architectures to draw (default 10)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of every network")
    p.add_argument("--jobs", type=int, default=None, help="networks trained at once (processes)")
    p.add_argument("--target-ms", type=float, default=None, help="the budget (default: the first network's)")
    p.add_argument("--no-measure", action="store_true", help="do not time the networks here")
    p.add_argument("--supernet", default=None, metavar="RUN",
                   help="TF-NAS search run folder whose supernet scores every network (default: the first argument,"
                        " when it is one)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from tfnas.config import apply_overrides, load_file, validate
    from tfnas.mbv2.search.compare import CompareConfig, compare_runs

    flags = {"data": args.data, "resolution": args.resolution, "random": args.random, "recipe.epochs": args.epochs,
             "jobs": args.jobs, "measure": False if args.no_measure else None}  # fmt: skip
    if args.config:
        cfg = load_file(args.config, CompareConfig, "compare config", flags)
    else:
        cfg = validate(CompareConfig, apply_overrides({}, flags), "tfnas compare")
    summary = compare_runs(args.searched, args.out, cfg, args.lut, args.target_ms, args.supernet)
    print(f"budget {summary['target_ms']:.3f} ms; random networks' median top-1 {summary['random_median_acc']:.3f}")
    for r in summary["networks"]:
        if "rank_among_random" in r:
            n = len(summary["random_accs"])
            print(f"  {r['name']}: top-1 {r['test_acc']:.3f}, beats {r['random_beaten']} of {n} random networks")
    tau = summary["kendall_tau_inherited_vs_standalone"]
    if tau is not None:
        print(f"supernet ranking: Kendall tau {tau:.3f} over {summary['kendall_tau_n']} networks"
              " (inherited vs stand-alone top-1)")  # fmt: skip
    print(f"results: {args.out}/results.json, plot: {args.out}/accuracy_vs_latency.png")
    return 0
