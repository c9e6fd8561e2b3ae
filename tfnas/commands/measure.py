"""``tfnas measure ARCH.json``: export the derived network and time it end to end."""

from __future__ import annotations

import argparse

from tfnas.latency.measure import PREPARERS
from tfnas.mbv2.measure import MEASURE_ROUNDS, measure_arch
from tfnas_base.atomic import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--backend", default="ort", choices=sorted(PREPARERS), help="runtime to time on")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (CPU backends)")
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default=None,
        help="int8: quantize the exported network statically before timing it (default: the --lut's, else fp32)",
    )
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument(
        "--rounds",
        type=int,
        default=MEASURE_ROUNDS,
        help="timing rounds, each between two timings of the reference network; the drift-cancelled result is"
        " their median ratio to it (one round swings by several %% on a shared machine)",
    )
    p.add_argument(
        "--measurements",
        type=int,
        default=1,
        help="measurements, each in a new process, pooled: their mean, with a +/- that covers the spread between"
        " them (one measurement's +/- covers its own rounds only)",
    )
    p.add_argument(
        "--lut",
        default=None,
        help="also predict from this table and report the error (the table must describe this machine)",
    )
    p.add_argument(
        "--allow-foreign-table",
        action="store_true",
        help="compare with a --lut measured on another device anyway",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write the measurement as JSON")


def run(args: argparse.Namespace) -> int:
    m = measure_arch(
        args.arch, args.backend, args.threads, args.batch, args.precision, args.rounds, args.lut,
        args.allow_foreign_table, measurements=args.measurements,
    )  # fmt: skip
    print(f"measured latency: {m.figure.describe()} ({m.shape})")
    if m.figure.clean:
        print(f"  {m.figure.method}")
    if "predicted_ms" in m.doc:
        print(f"predicted: {m.doc['predicted_ms']:.3f} ms  error: {m.doc['error_pct']:+.1f}%")
    if args.json:
        atomic_write_json(args.json, m.doc)
    return 0
