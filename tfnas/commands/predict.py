"""``tfnas predict --lut LUT.json ARCH.json``: per-layer table latencies and the total."""

from __future__ import annotations

import argparse

from tfnas.latency.predict import apply_calibration, predict_breakdown, table_calibration
from tfnas.latency.table import Lookup, device_match, load_table, table_device, table_precision
from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.keys import arch_mweights
from tfnas.utils.io import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--lut", required=True, help="latency table JSON")
    p.add_argument("--raw", action="store_true", help="ignore the table's calibration")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the breakdown as JSON")


def run(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    table = load_table(args.lut, arch.space, resolution=arch.resolution, warn_fingerprint=False)
    rows = predict_breakdown(arch, table)
    raw = sum(ms for _, _, ms in rows)
    cal = None if args.raw else table_calibration(table)
    mweights = arch_mweights(arch, Lookup(table).grid.runtime_width)
    total = apply_calibration(raw, cal, mweights)
    width = max(len(k) for k, _, _ in rows)
    print(f"{'op signature':<{width}}  {'width':>5}  {'ms':>8}")
    for key, w, ms in rows:
        print(f"{key:<{width}}  {'-' if w is None else w:>5}  {ms:8.3f}")
    print(f"{'sum of ops':<{width}}  {'':>5}  {raw:8.3f}")
    if cal:
        print(
            f"{'calibrated':<{width}}  {'':>5}  {total:8.3f}   ({cal['scale']:.4f} x sum"
            f" + {float(cal.get('ms_per_mweight', 0.0)):.3f} ms x {mweights:.2f} Mweights + {cal['offset_ms']:.3f} ms)"
        )
    print(f"predicted latency: {total:.2f} ms ({table_precision(table)}) on the table's device: {table_device(table)}")
    match = device_match(table)
    if not match.same_device:
        print(f"  (this machine is not that device: {match.describe()})")
    if args.json:
        atomic_write_json(
            args.json,
            {
                "arch": str(args.arch),
                "lut": str(args.lut),
                "sum_ms": raw,
                "mweights": mweights,
                "predicted_ms": total,
                "precision": table_precision(table),
                "calibration": cal,
                "layers": [{"key": k, "width": w, "ms": ms} for k, w, ms in rows],
            },
        )
    return 0
