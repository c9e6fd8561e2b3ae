"""Score latency tables against the measurements of one recorded ``tfnas validate`` run (A/B on the same networks).

A validation report holds the measured latencies of ``networks`` search-like networks drawn with ``--seed``;
every table given here predicts the same draws (its own width alignment; tables of one space and alignment
draw the same networks), so two tables are compared on one set of measurements, free of the host's drift
between runs.

    python benchmarks/latency/rescore_validation.py REPORT.json --seed 1 --luts NEW.json OLD.json --out R.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tfnas.latency.table import Lookup, table_grid
from tfnas.latency.validate import error_report
from tfnas.mbv2.calibrate import sample_archs
from tfnas.mbv2.keys import open_space_table
from tfnas.mbv2.predict import predict
from tfnas_base.atomic import atomic_write_json


def rescore(report: dict, seed: int, lut: str, align: int | None = None) -> dict:
    table, space = open_space_table(lut)  # checked against its space
    grid = table_grid(table)
    align = align or grid.align  # the run's draws: the validated table's alignment
    archs = sample_archs(space, int(report["networks"]), seed, int(table.fingerprint["resolution"]), align)
    predicted = [predict(a, Lookup(table)) for a in archs]
    return {
        "lut": lut,
        "grid": grid.to_dict(),
        "predicted_ms": predicted,
        **error_report(predicted, report["measured_ms"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="a `tfnas validate` JSON report")
    p.add_argument("--seed", type=int, default=1, help="the --seed of that validate run")
    p.add_argument("--luts", nargs="+", required=True)
    p.add_argument("--align", type=int, default=None, help="width alignment of the run's draws (default: each table's)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    rows = [rescore(report, args.seed, lut, args.align) for lut in args.luts]
    for r in rows:
        print(f"{r['lut']}: block {r['grid'].get('block')}, MAPE {r['mape']:.2f}%, worst {r['worst']:.1f}%,"
              f" within 10% {r['within_10']:.0%}, tau {r['kendall_tau']:.3f}")  # fmt: skip
    result = {
        "command": " ".join(sys.argv),
        "report": args.report,
        "noise_floor": report["noise_floor"],
        "tables": rows,
    }
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
