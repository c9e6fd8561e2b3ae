"""``tfnas calibrate --lut LUT.json``: fit the table to end-to-end measurements of random architectures.

The networks are timed with the table's runtime and precision: for an int8 table each one is exported
and quantized exactly as the table's per-op graphs were (the recipe in its fingerprint) before timing.
"""

from __future__ import annotations

import argparse

from tfnas.latency.table import table_precision
from tfnas.mbv2.calibrate import CALIBRATION_ROUNDS, CALIBRATION_SAMPLES, CALIBRATION_SEED, calibrate
from tfnas.mbv2.keys import open_space_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lut", required=True, help="latency table JSON (read; written only with --in-place)")
    p.add_argument("--space", default=None, help="space name or YAML path (default: the table's)")
    p.add_argument("--samples", type=int, default=CALIBRATION_SAMPLES, help="random architectures to measure")
    p.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    p.add_argument(
        "--rounds", type=int, default=CALIBRATION_ROUNDS, help="interleaved measuring rounds per architecture"
    )
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the table's)")
    p.add_argument(
        "--align",
        type=int,
        default=None,
        help="round sampled widths to multiples of this (default: the table's alignment, as a search derives)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", default=None, help="write the calibrated table here (--lut stays as it is)")
    where.add_argument("--in-place", action="store_true", help="rewrite --lut (its previous fit is kept in history)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--allow-foreign-table",
        action="store_true",
        help="calibrate a table measured on another device with timings of this machine anyway",
    )


def run(args: argparse.Namespace) -> int:
    table, space = open_space_table(
        args.lut, args.space, threads=args.threads, require_device="calibrating", allow_foreign=args.allow_foreign_table
    )
    cal = calibrate(
        table,
        space,
        args.samples,
        args.seed,
        args.threads,
        progress=not args.quiet,
        rounds=args.rounds,
        align=args.align,
    )
    out = table.save(args.lut if args.in_place else args.out)
    print(
        f"{out} ({table_precision(table)}): measured = {cal['scale']:.4f} x sum + {cal['ms_per_mweight']:.3f} ms x Mweights"
        f" + {cal['offset_ms']:.3f} ms over {cal['samples']}"
        f" architectures; MAPE {cal['mape_before']:.2f}% -> {cal['mape_after']:.2f}%"
    )
    return 0
