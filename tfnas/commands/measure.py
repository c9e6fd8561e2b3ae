"""``tfnas measure ARCH.json``: export the derived network and time it end to end."""

from __future__ import annotations

import argparse
import dataclasses

from tfnas.arch import load_arch
from tfnas.latency.measure import PREPARERS, measure_arch
from tfnas.utils.io import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="derived-architecture JSON file")
    p.add_argument("--backend", default="ort", choices=sorted(PREPARERS), help="runtime to time on")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (CPU backends)")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--lut", default=None, help="also predict from this table and report the error")
    p.add_argument("--json", default=None, metavar="OUT", help="write the measurement as JSON")


def run(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    m = measure_arch(arch, args.backend, args.threads, args.batch)
    flag = "  NOISY (stayed above the protocol's cv limit)" if m.noisy else ""
    print(
        f"measured latency: {m.median_ms:.3f} ms (IQR {m.spread_ms:.3f} ms, cv {m.cv:.1%}, {m.repeats} runs;"
        f" {args.backend}, {args.threads} thread(s), batch {args.batch}, {arch.resolution}x{arch.resolution}){flag}"
    )
    result = {
        "arch": str(args.arch),
        "backend": args.backend,
        "threads": args.threads,
        "batch": args.batch,
        "resolution": arch.resolution,
        **dataclasses.asdict(m),
    }
    if args.lut:
        from tfnas.latency.predict import predict
        from tfnas.latency.table import load_table

        table = load_table(args.lut, arch.space, batch=args.batch, resolution=arch.resolution, threads=args.threads)
        pred = predict(arch, table)
        err = (pred - m.median_ms) / m.median_ms * 100
        print(f"predicted: {pred:.3f} ms  error: {err:+.1f}%")
        result.update(predicted_ms=pred, error_pct=err, lut=str(args.lut))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
