"""``tfnas predict --lut LUT.json ARCH.json``: per-layer table latencies and the total."""

from __future__ import annotations

import argparse

from tfnas.mbv2.predict import predict_report
from tfnas_base.atomic import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--lut", required=True, help="latency table JSON")
    p.add_argument("--raw", action="store_true", help="ignore the table's calibration")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the breakdown as JSON")


def run(args: argparse.Namespace) -> int:
    r = predict_report(args.arch, args.lut, raw=args.raw)
    width = max(len(k) for k, _, _ in r.rows)
    print(f"{'op signature':<{width}}  {'width':>5}  {'ms':>8}")
    for key, w, ms in r.rows:
        print(f"{key:<{width}}  {'-' if w is None else w:>5}  {ms:8.3f}")
    print(f"{'sum of ops':<{width}}  {'':>5}  {r.sum_ms:8.3f}")
    cal = r.calibration
    if cal:
        print(
            f"{'calibrated':<{width}}  {'':>5}  {r.predicted_ms:8.3f}   ({cal['scale']:.4f} x sum"
            f" + {float(cal.get('ms_per_mweight', 0.0)):.3f} ms x {r.mweights:.2f} Mweights + {cal['offset_ms']:.3f} ms)"
        )
    print(f"predicted latency: {r.predicted_ms:.2f} ms ({r.precision}) on the table's device: {r.device}")
    if not r.same_device:
        print(f"  (this machine is not that device: {r.device_note})")
    if args.json:
        atomic_write_json(args.json, r.to_dict())
    return 0
