"""Which timing statistic repeats on a shared host? Pass-to-pass error of several statistics, one run.

The same search-like networks are timed in ``--rounds`` interleaved rounds of ``--runs``
runs each, twice (pass A, then pass B). For each statistic the latency of a network in a pass
is computed from that pass's raw samples, and the two passes are compared (MAPE, worst). A
statistic whose value depends on how many samples were taken is caught by the last column:
the same statistic from the first 5 runs of each round vs from all runs.

    python benchmarks/latency/bench_statistic.py --networks 12 --rounds 5 --runs 25 \
        --out benchmarks/latency/results/statistic_<host>.json
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from profilers.backends import get_backend
from profilers.fingerprint import current_fingerprint
from tfnas.latency.measure import export_network
from tfnas.mbv2.calibrate import sample_archs
from tfnas.mbv2.measure import ArchNetwork
from tfnas.mbv2.space import load_space
from tfnas_base.atomic import atomic_write_json


def stat_median_of_rounds(rounds: list[np.ndarray]) -> float:
    return float(statistics.median(float(np.median(r)) for r in rounds))


def stat_min_of_round_medians(rounds: list[np.ndarray]) -> float:
    return float(min(float(np.median(r)) for r in rounds))


def stat_p10_pooled(rounds: list[np.ndarray]) -> float:
    return float(np.percentile(np.concatenate(rounds), 10))


def stat_median_of_round_p10(rounds: list[np.ndarray]) -> float:
    return float(statistics.median(float(np.percentile(r, 10)) for r in rounds))


def stat_median_of_round_p20(rounds: list[np.ndarray]) -> float:
    return float(statistics.median(float(np.percentile(r, 20)) for r in rounds))


def stat_min(rounds: list[np.ndarray]) -> float:
    return float(np.min(np.concatenate(rounds)))


STATS = {
    "median of round medians (old protocol)": stat_median_of_rounds,
    "minimum of round medians": stat_min_of_round_medians,
    "median of round p20": stat_median_of_round_p20,
    "median of round p10 (new protocol)": stat_median_of_round_p10,
    "p10 of all runs": stat_p10_pooled,
    "minimum of all runs": stat_min,
}


def mape(a: list[float], b: list[float]) -> tuple[float, float]:
    rel = [abs(x - y) / y * 100 for x, y in zip(a, b)]
    return float(np.mean(rel)), float(np.max(rel))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="tfnas_imagenet")
    ap.add_argument("--networks", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    space = load_space(args.space)
    archs = sample_archs(space, args.networks, args.seed, space.resolution, align=4)
    backend = get_backend("ort", threads=args.threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        fns = []
        for i, arch in enumerate(archs):
            path = export_network(ArchNetwork(arch), Path(tmp) / f"{i}.onnx")
            fns.append(backend.prepare(path, ArchNetwork(arch).input_shape(1)))
        rng = random.Random(args.seed)
        samples = {p: [[] for _ in archs] for p in "AB"}  # pass -> network -> rounds of runs
        for p in "AB":
            for _ in range(args.rounds):
                order = list(range(len(archs)))
                rng.shuffle(order)
                for i in order:
                    fn = fns[i]
                    for _ in range(3):
                        fn()
                    runs = []
                    for _ in range(args.runs):
                        t = time.perf_counter()
                        fn()
                        runs.append((time.perf_counter() - t) * 1000)
                    samples[p][i].append(np.asarray(runs))
    rows = {}
    for name, fn in STATS.items():
        a = [fn(r) for r in samples["A"]]
        b = [fn(r) for r in samples["B"]]
        few = [fn([x[:5] for x in r]) for r in samples["A"]]
        m, w = mape(a, b)
        rows[name] = {
            "pass_mape": m,
            "pass_worst": w,
            "bias_5_runs_vs_all_pct": float(np.mean([(f / x - 1) * 100 for f, x in zip(few, a)])),
        }
    fp = current_fingerprint(args.threads)
    host = "AVX-512" if "avx512f" in fp["cpu_isa"] else "AVX2" if "avx2" in fp["cpu_isa"] else "other"
    print(
        f"host {host}, {len(archs)} networks, {args.rounds} rounds x {args.runs} runs per pass, {time.time() - t0:.0f} s"
    )
    print(f"{'statistic':42s} {'pass MAPE':>9s} {'worst':>7s} {'5 runs vs all':>14s}")
    for name, r in rows.items():
        print(f"{name:42s} {r['pass_mape']:8.2f}% {r['pass_worst']:6.1f}% {r['bias_5_runs_vs_all_pct']:+13.2f}%")
    atomic_write_json(
        args.out,
        {
            "command": "python benchmarks/latency/bench_statistic.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "host": host,
            "fingerprint": fp,
            "python": platform.python_version(),
            "seconds": round(time.time() - t0, 1),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
