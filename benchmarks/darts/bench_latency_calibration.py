"""DARTS latency-aware search: predicted vs measured eval-network latency, before and after calibration.

Profiles (or reuses) a table of every S0 cell op at the deployment shape, fits its calibration on
``--fit`` random genotypes (seed 0) and reports both fits on ``--held-out`` other random genotypes
(seed 1), all timed end to end on this machine with the table's statistic, interleaved rounds.

    python benchmarks/darts/bench_latency_calibration.py --lut latency_tables/<darts table>.json \
        --out benchmarks/darts/results/latency_calibration_<host>.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from profilers.lut import LatencyTable
from profilers.run import profile_bundle
from profilers.timing import PROFILE_PROTOCOL
from tfnas.darts.calibrate import calibrate_darts, measure_genotypes
from tfnas.darts.latency import genotype_latency, genotype_sum, write_darts_bundle
from tfnas.darts.shapes import DeployShape
from tfnas.darts.space import load_cell_space, random_genotype
from tfnas.latency.calibrate import error_stats
from tfnas.latency.measure import protocol_for
from tfnas.latency.table import table_device
from tfnas_base.atomic import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="s0")
    ap.add_argument("--lut", required=True, help="table to profile into (resumed) and calibrate in place")
    ap.add_argument("--fit", type=int, default=24)
    ap.add_argument("--held-out", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    space, shape = load_cell_space(args.space), DeployShape()
    t0 = time.time()
    bundle = Path(args.lut).with_suffix(".bundle")
    write_darts_bundle(space, shape, bundle)
    table = profile_bundle(bundle, args.lut, "ort", args.threads, PROFILE_PROTOCOL, progress=False)
    profile_s = time.time() - t0
    cal = calibrate_darts(table, space, shape, args.fit, seed=0, threads=args.threads, rounds=args.rounds)
    table.save(args.lut)
    rng = random.Random(1)
    held = [random_genotype(space, rng) for _ in range(args.held_out)]
    measured, _ = measure_genotypes(held, shape, args.threads, args.rounds, 1, protocol_for(table.protocol))
    raw = [genotype_sum(g, shape, table) for g in held]
    calibrated = [genotype_latency(g, shape, table) for g in held]
    before, after = error_stats(raw, measured), error_stats(calibrated, measured)
    fp = LatencyTable.load(args.lut).fingerprint
    host = "AVX-512" if "avx512f" in fp.get("cpu_isa", []) else "AVX2"
    print(f"host {host}; table {args.lut}: {table_device(table)}")
    print(
        f"fit on {args.fit}: {cal['scale']:.3f} x sum + {cal['ms_per_mweight']:.3f} ms/Mparam + {cal['offset_ms']:.3f} ms"
    )
    print(f"held-out {args.held_out}: uncalibrated MAPE {before['mape']:.2f}% (worst {before['worst']:.1f}%)")
    print(f"held-out {args.held_out}: calibrated   MAPE {after['mape']:.2f}% (worst {after['worst']:.1f}%)")
    atomic_write_json(
        args.out,
        {
            "command": "python " + " ".join(sys.argv),
            "host": host,
            "device": table_device(table),
            "profile_s": round(profile_s, 1),
            "seconds": round(time.time() - t0, 1),
            "calibration": cal,
            "held_out": {
                "n": args.held_out,
                "uncalibrated": before,
                "calibrated": after,
                "measured_ms": measured,
                "predicted_ms": calibrated,
            },
        },
    )


if __name__ == "__main__":
    main()
