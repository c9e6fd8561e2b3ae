"""Latency-table benchmarks: interpolation error of the sparse grid, and predicted vs measured latency.

    python benchmarks/latency/bench_latency.py interp --lut LUT.json   # (b) sparse-grid interpolation MAPE
    python benchmarks/latency/bench_latency.py e2e --lut LUT.json      # (c) predicted vs end-to-end latency
    python benchmarks/latency/bench_latency.py build --lut LUT.json    # (a) build time, read from the LUT

Results are written as JSON under ``benchmarks/latency/results/``. See the README next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from profilers.backends import get_backend
from profilers.bundle import load_manifest
from profilers.fingerprint import current_fingerprint
from profilers.lut import LatencyTable
from profilers.timing import TimingProtocol, measure
from tfnas.latency.calibrate import error_stats
from tfnas.latency.measure import Runtime, TimingSettings, measure_networks, round_latency
from tfnas.latency.table import Lookup, WidthGrid, make_grid, open_table
from tfnas.mbv2.bundle import write_bundle
from tfnas.mbv2.calibrate import sample_archs
from tfnas.mbv2.keys import open_space_table, space_signatures
from tfnas.mbv2.measure import networks
from tfnas.mbv2.predict import predict
from tfnas.mbv2.space import load_space
from tfnas_base.atomic import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"fingerprint": current_fingerprint(1), "loadavg_at_start": load, "python": platform.python_version()}


def pick_widths(lo: int, hi: int, grid: list[int], n: int, rng: random.Random) -> list[int]:
    """``n`` held-out widths (not on the grid), half in the aligned class (multiples of 4), half not."""
    aligned = [w for w in range(lo, hi + 1) if w % 4 == 0 and w not in grid]
    other = [w for w in range(lo, hi + 1) if w % 4 and w not in grid]
    k = min(len(aligned), n // 2)
    return sorted(rng.sample(aligned, k) + rng.sample(other, min(len(other), n - k)))


def bench_interp(args: argparse.Namespace) -> dict:
    """Measure grid points and held-out widths of sampled signatures in the same interleaved rounds.

    Interleaving (shuffled order, several rounds, median over rounds) keeps the load
    of a shared machine from showing up as interpolation error.
    """
    space = load_space(args.space)
    grid = make_grid("sparse")
    rng = random.Random(args.seed)
    layer_sigs = [s for s in space_signatures(space, args.resolution) if s.width_range]
    sampled = rng.sample(layer_sigs, min(args.signatures, len(layer_sigs)))
    plan: dict[str, dict[str, list[int]]] = {}
    for sig in sampled:
        g = grid.widths(*sig.width_range)
        plan[sig.key] = {"grid": g, "held_out": pick_widths(*sig.width_range, g, args.held_out, rng)}
    wanted = {(k, w) for k, p in plan.items() for w in p["grid"] + p["held_out"]}
    protocol = TimingProtocol(warmup=5, min_repeats=15, max_repeats=300, target_rel_ci=0.01, max_time_s=args.max_time)
    backend = get_backend("ort", threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="tfnas-bench-interp-") as tmp:
        t0 = time.perf_counter()
        write_bundle(
            space,
            tmp,
            1,
            args.resolution,
            make_grid("dense"),
            keys=set(plan),
            widths_filter=lambda s, w: (s.key, w) in wanted,
            progress=False,
        )
        export_s = time.perf_counter() - t0
        entries = list(load_manifest(tmp).entries)
        fns = {(e.key, e.width): backend.prepare(e.path, e.input_shape) for e in entries}
        samples: dict[tuple[str, int], list[float]] = {kw: [] for kw in fns}
        t0 = time.perf_counter()
        for r in range(args.rounds):
            order = list(fns)
            random.Random(r).shuffle(order)
            for kw in order:
                samples[kw].append(measure(fns[kw], protocol).median_ms)
            print(f"round {r + 1}/{args.rounds} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        measure_s = time.perf_counter() - t0
    truth = {kw: statistics.median(v) for kw, v in samples.items()}
    spread = {kw: (max(v) - min(v)) / statistics.median(v) * 100 for kw, v in samples.items()}

    def table_of(g: WidthGrid) -> Lookup:
        t = LatencyTable(space.name, current_fingerprint(args.threads), {}, meta={"bundle_meta": {"grid": g.to_dict()}})
        for key, p in plan.items():
            ws = p["grid"]
            n = len(ws)
            t.set_entry(key, ws, [truth[(key, w)] for w in ws], [0.0] * n, [0.0] * n, [False] * n, [1] * n)
        return Lookup(t)

    class_aware, naive = table_of(grid), table_of(WidthGrid("sparse", 1, 1, grid.intervals))
    shipped = Lookup(open_table(args.lut)) if args.lut else None
    rows = []
    for key, p in plan.items():
        for w in p["held_out"]:
            m = truth[(key, w)]
            row = {
                "key": key,
                "width": w,
                "aligned": w % 4 == 0,
                "measured_ms": m,
                "round_spread_pct": spread[(key, w)],
                "interp_ms": class_aware(key, w),
                "naive_linear_ms": naive(key, w),
            }
            if shipped is not None:
                row["shipped_lut_ms"] = shipped(key, w)
            rows.append(row)

    def ape(col: str, subset=None) -> dict:
        sel = [r for r in rows if subset is None or r["aligned"] == subset]
        errs = [abs(r[col] - r["measured_ms"]) / r["measured_ms"] * 100 for r in sel]
        return {"mape": float(np.mean(errs)), "worst": float(np.max(errs)), "n": len(errs)}

    result = {
        "benchmark": "interpolation",
        "command": " ".join(sys.argv),
        "space": space.name,
        "grid": grid.to_dict(),
        "signatures": len(plan),
        "held_out_widths": len(rows),
        "rounds": args.rounds,
        "protocol": protocol.to_dict(),
        "export_s": round(export_s, 1),
        "measure_s": round(measure_s, 1),
        "interp_same_run": {
            "all": ape("interp_ms"),
            "aligned": ape("interp_ms", True),
            "unaligned": ape("interp_ms", False),
        },
        "naive_linear_same_run": {"all": ape("naive_linear_ms")},
        "median_round_spread_pct": float(np.median(list(spread.values()))),
        "machine": machine(),
        "plan": plan,
        "grid_ms": {f"{k}@{w}": truth[(k, w)] for k, p in plan.items() for w in p["grid"]},
        "rows": rows,
    }
    if shipped is not None:
        result["shipped_lut_vs_fresh"] = {"all": ape("shipped_lut_ms"), "lut": str(args.lut)}
    return result


def bench_e2e(args: argparse.Namespace) -> dict:
    """Random architectures (not those used to calibrate): table prediction vs end-to-end ORT latency."""
    table, space = open_space_table(args.lut, threads=args.threads)
    res = int(table.fingerprint["resolution"])
    lookup = Lookup(table)
    archs = sample_archs(space, args.samples, args.seed, res, args.align)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    rt = Runtime("ort", args.threads, int(table.fingerprint["batch"]))
    runs = measure_networks(networks(archs), rt, TimingSettings(args.rounds, args.seed, progress=True))
    rows = []
    for arch, ms in zip(archs, runs):
        rows.append(
            {
                "raw_ms": predict(arch, lookup, calibrated=False),
                "calibrated_ms": predict(arch, lookup),
                "measured_ms": round_latency(ms),
                "round_ms": [m.median_ms for m in ms],
                "cv": [m.cv for m in ms],
                "noisy": [m.noisy for m in ms],
                "depths": arch.depths,
                "aligned_width_fraction": sum(c.width % 4 == 0 for _, c in arch.active_layers())
                / max(1, len(arch.active_layers())),
            }
        )
    meas = [r["measured_ms"] for r in rows]
    cal = table.calibration
    return {
        "benchmark": "predicted_vs_measured",
        "command": " ".join(sys.argv),
        "lut": str(args.lut),
        "samples": args.samples,
        "seed": args.seed,
        "calibration": cal,
        "calibration_in_sample": table.meta.get("calibration_detail", {}),
        "before_calibration": error_stats([r["raw_ms"] for r in rows], meas),
        "after_calibration": error_stats([r["calibrated_ms"] for r in rows], meas),
        "rounds": args.rounds,
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "machine": machine(),
        "rows": rows,
    }


def bench_build(args: argparse.Namespace) -> dict:
    table = LatencyTable.load(args.lut)
    return {
        "benchmark": "lut_build",
        "lut": str(args.lut),
        "signatures": len(table),
        "points": table.n_points(),
        "bundle_s": table.meta.get("bundle_s"),
        "build_s": table.meta.get("build_s"),
        "noisy_points": sum(sum(table.entry(k)["noisy"]) for k in table.keys()),
        "fingerprint": table.fingerprint,
        "protocol": table.protocol,
        "created": table.created,
        "finished": table.meta.get("finished"),
    }


BENCHES = {"interp": bench_interp, "e2e": bench_e2e, "build": bench_build}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", choices=sorted(BENCHES))
    p.add_argument("--lut", default=None, help="latency table (e2e, build; optional for interp)")
    p.add_argument("--space", default="tfnas_imagenet")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--signatures", type=int, default=12, help="interp: signatures sampled")
    p.add_argument("--held-out", type=int, default=8, help="interp: held-out widths per signature")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measuring rounds (interp, e2e)")
    p.add_argument("--max-time", type=float, default=0.25, help="interp: time cap per graph and round, s")
    p.add_argument("--samples", type=int, default=20, help="e2e: random architectures")
    p.add_argument("--align", type=int, default=1, help="e2e: round widths to multiples of this (4 = search-like)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (e2e: 1 = not the calibration set)")
    p.add_argument("--out", default=None, help="result JSON (default: results/<bench>.json)")
    args = p.parse_args()
    result = BENCHES[args.bench](args)
    out = Path(args.out) if args.out else RESULTS / f"{args.bench}.json"
    atomic_write_json(out, result)
    skip = ("rows", "plan", "grid_ms", "machine", "fingerprint", "protocol")
    summary = {k: v for k, v in result.items() if k not in skip}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
