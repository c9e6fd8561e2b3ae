"""``tfnas measure ARCH.json``: export the derived network and time it end to end."""

from __future__ import annotations

import argparse
import dataclasses

from profilers.fingerprint import current_fingerprint
from tfnas.errors import TfnasError
from tfnas.latency.measure import (
    DEFAULT_PROTOCOL,
    PREPARERS,
    Runtime,
    measure_drift_cancelled,
    protocol_for,
    table_reference_ms,
)
from tfnas.mbv2.arch import load_arch
from tfnas.utils.io import atomic_write_json


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
        default=5,
        help="timing rounds, each between two timings of the reference network; the drift-cancelled result is"
        " their median ratio to it (one round swings by several %% on a shared machine)",
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
    if args.rounds < 1:
        raise TfnasError(f"--rounds {args.rounds}: expected an integer >= 1")
    arch = load_arch(args.arch)
    table, protocol = None, DEFAULT_PROTOCOL
    precision, quantization = args.precision or "fp32", None
    if args.lut:  # checked before any timing: a foreign table's numbers must not be compared with ours
        from tfnas.latency.measure import table_quantization
        from tfnas.latency.table import load_table, require_this_device, table_device, table_precision

        table = load_table(
            args.lut, arch.space, batch=args.batch, resolution=arch.resolution, threads=args.threads,
            warn_fingerprint=False, precision=args.precision,
        )  # fmt: skip
        require_this_device(table, "measuring", args.allow_foreign_table, threads=args.threads)
        protocol = protocol_for(table.protocol)
        precision, quantization = table_precision(table), table_quantization(table)  # quantized as the table was
        print(f"table device: {table_device(table)}")
    rt = Runtime(args.backend, args.threads, args.batch, precision, quantization)
    ref_ms = table_reference_ms(table) if table is not None else None
    figs, seen = measure_drift_cancelled([arch], rt, args.rounds, protocol, ref_ms, "table")
    fig = figs[0]
    latency = fig.value_ms
    shape = (
        f"{args.backend} {precision}, {args.threads} thread(s), batch {args.batch}, {arch.resolution}x{arch.resolution}"
    )
    print(f"measured latency: {fig.describe()} ({shape})")
    if fig.clean:
        print(f"  {fig.method}")
    result = {
        "arch": str(args.arch),
        "backend": args.backend,
        "threads": args.threads,
        "batch": args.batch,
        "resolution": arch.resolution,
        "precision": precision,
        "quantization": quantization.to_dict() if quantization is not None else None,
        "latency_ms": latency if fig.clean else None,
        "raw_ms": fig.raw_ms,
        "cancelled_ms": fig.cancelled_ms,
        "uncertainty_ms": fig.uncertainty_ms,
        "clean": fig.clean,
        "reference_ms": fig.reference_ms,  # the reference's quiet time the figure converts with
        "reference_source": fig.reference_source,
        "reference_seen_ms": seen,
        "statistic": fig.method,
        "device": current_fingerprint(args.threads, batch=args.batch, resolution=arch.resolution, precision=precision),
        "rounds": [dataclasses.asdict(r) for r in fig.rounds],
    }
    if table is not None and fig.clean:
        from tfnas.latency.predict import predict

        pred = predict(arch, table)
        err = (pred - latency) / latency * 100
        print(f"predicted: {pred:.3f} ms  error: {err:+.1f}%")
        result.update(predicted_ms=pred, error_pct=err, lut=str(args.lut))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
