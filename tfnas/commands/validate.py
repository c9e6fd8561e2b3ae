"""``tfnas validate --lut T``: does the table describe this machine? Verdict beside the host's noise floor.

Networks are timed at the table's precision (an int8 table's are quantized as its graphs were).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfnas.errors import TfnasError
from tfnas.latency.validate import write_outputs
from tfnas.mbv2.keys import open_space_table
from tfnas.mbv2.validate import VALIDATION_ROUNDS, VALIDATION_SAMPLES, VALIDATION_SEED, validate_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lut", required=True, help="latency table JSON")
    p.add_argument("--space", default=None, help="space name or YAML path (default: the table's)")
    p.add_argument(
        "--samples", type=int, default=VALIDATION_SAMPLES, help="search-like networks to time (~1 min at 12)"
    )
    p.add_argument("--rounds", type=int, default=VALIDATION_ROUNDS, help="interleaved rounds, split into two passes")
    p.add_argument("--seed", type=int, default=VALIDATION_SEED, help="which random networks (calibration: seed 0)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the table's)")
    p.add_argument("--out", default=None, help="JSON report (default: <lut>.validation.json; a PNG plot beside it)")
    p.add_argument("--allow-foreign-table", action="store_true", help="time a table of another device anyway")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.samples < 3 or args.rounds < 2:
        raise TfnasError(f"--samples {args.samples} / --rounds {args.rounds}: need at least 3 networks and 2 rounds")
    table, space = open_space_table(args.lut, args.space)
    result = validate_table(
        table,
        space,
        args.samples,
        args.rounds,
        args.seed,
        args.threads,
        args.allow_foreign_table,
        progress=not args.quiet,
    )
    out = Path(args.out) if args.out else Path(args.lut).with_suffix(".validation.json")
    plot = out.with_suffix(".png")
    write_outputs(result, out, plot)
    print(result.summary())
    print(f"report: {out}" + (f", plot: {plot}" if result.predicted_ms else ""))
    return 0 if result.verdict == "holds" else 1
