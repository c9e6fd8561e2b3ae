"""``tfnas measure ARCH.json``: export the derived network and time it end to end."""

from __future__ import annotations

import argparse
import dataclasses

from tfnas.arch import load_arch
from tfnas.errors import TfnasError
from tfnas.latency.measure import PREPARERS, measure_archs, round_median
from tfnas.utils.io import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--backend", default="ort", choices=sorted(PREPARERS), help="runtime to time on")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (CPU backends)")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timing rounds; the result is their median (one round swings by several %% on a shared machine)",
    )
    p.add_argument("--lut", default=None, help="also predict from this table and report the error")
    p.add_argument("--json", default=None, metavar="OUT", help="write the measurement as JSON")


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise TfnasError(f"--rounds {args.rounds}: expected an integer >= 1")
    arch = load_arch(args.arch)
    rounds = measure_archs([arch], args.backend, args.threads, args.batch, rounds=args.rounds)[0]
    median = round_median(rounds)
    noisy = any(m.noisy for m in rounds)
    flag = "  NOISY (a round stayed above the protocol's cv limit)" if noisy else ""
    per_round = ", ".join(f"{m.median_ms:.3f}" for m in rounds)
    print(
        f"measured latency: {median:.3f} ms (median of {len(rounds)} rounds: {per_round};"
        f" {args.backend}, {args.threads} thread(s), batch {args.batch}, {arch.resolution}x{arch.resolution}){flag}"
    )
    result = {
        "arch": str(args.arch),
        "backend": args.backend,
        "threads": args.threads,
        "batch": args.batch,
        "resolution": arch.resolution,
        "median_ms": median,
        "statistic": "median over rounds of each round's median",
        "noisy": noisy,
        "rounds": [dataclasses.asdict(m) for m in rounds],
    }
    if args.lut:
        from tfnas.latency.predict import predict
        from tfnas.latency.table import load_table

        table = load_table(args.lut, arch.space, batch=args.batch, resolution=arch.resolution, threads=args.threads)
        pred = predict(arch, table)
        err = (pred - median) / median * 100
        print(f"predicted: {pred:.3f} ms  error: {err:+.1f}%")
        result.update(predicted_ms=pred, error_pct=err, lut=str(args.lut))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
