"""``python -m profilers``: run a bundle into a LUT, or summarise a LUT.

Errors print one message and exit non-zero (2: bad input, 130: interrupted); no traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from profilers.backends import BACKENDS
from profilers.device import describe_device
from profilers.lut import LatencyTable
from profilers.timing import PROFILE_PROTOCOL, TimingProtocol
from tfnas_base.errors import UserError

_DEFAULT = PROFILE_PROTOCOL


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profilers", description="Device-side latency profilers for tfnas.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="measure every graph of a bundle into a LUT (resumable)")
    r.add_argument("bundle", help="bundle folder (with manifest.json)")
    r.add_argument("--out", required=True, help="LUT JSON file to write (resumed if it exists)")
    r.add_argument("--backend", default="ort", choices=sorted(BACKENDS))
    r.add_argument("--threads", type=int, default=1, help="intra-op threads (ort)")
    r.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "int8", "fp16"),
        help="default: the bundle's (fp32 unless `tfnas bundle --precision int8`); int8: --backend ort quantizes"
        " each graph statically (QDQ, per-channel int8 weights, uint8 activations) before timing it;"
        " fp16: --backend tensorrt",
    )
    r.add_argument(
        "--quantize-workers",
        type=int,
        default=None,
        help="int8: processes quantizing the bundle before timing starts (default: the usable cores)",
    )
    r.add_argument("--no-resume", action="store_true", help="start over even if --out exists")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--warmup", type=int, default=_DEFAULT.warmup, help="warm-up runs per attempt")
    r.add_argument("--min-repeats", type=int, default=_DEFAULT.min_repeats)
    r.add_argument("--max-repeats", type=int, default=_DEFAULT.max_repeats)
    r.add_argument("--max-time", type=float, default=_DEFAULT.max_time_s, help="seconds per attempt per graph")
    r.add_argument("--target-ci", type=float, default=_DEFAULT.target_rel_ci, help="relative 95%% CI of the median")
    r.add_argument("--noisy-cv", type=float, default=_DEFAULT.noisy_cv, help="cv above which a result is noisy")
    r.add_argument("--passes", type=int, default=_DEFAULT.passes, help="whole-bundle passes (median of passes)")
    r.add_argument("--remeasure", type=int, default=_DEFAULT.remeasure_attempts, help="re-measure attempts if noisy")

    i = sub.add_parser("info", help="summarise a LUT file")
    i.add_argument("lut", help="LUT JSON file")
    return p


def _run(args: argparse.Namespace) -> int:
    from profilers.run import profile_bundle, profile_note

    protocol = TimingProtocol(
        statistic=_DEFAULT.statistic,
        warmup=args.warmup,
        min_repeats=args.min_repeats,
        max_repeats=args.max_repeats,
        max_time_s=args.max_time,
        floor_repeats=min(_DEFAULT.floor_repeats, args.min_repeats),
        target_rel_ci=args.target_ci,
        noisy_cv=args.noisy_cv,
        remeasure_attempts=args.remeasure,
        passes=args.passes,
    )
    table = profile_bundle(
        args.bundle,
        args.out,
        backend=args.backend,
        threads=args.threads,
        protocol=protocol,
        progress=not args.no_progress,
        resume=not args.no_resume,
        precision=args.precision,
        quantize_workers=args.quantize_workers,
    )
    noisy = sum(sum(table.entry(k)["noisy"]) for k in table.keys())
    quant = table.meta.get("quantize") if table.fingerprint.get("precision") == "int8" else None
    extra = f"; int8: {quant['graphs']} graphs quantized in {quant['seconds']:.0f} s" if quant else ""
    print(
        f"wrote {args.out}: {len(table)} keys, {table.n_points()} points, {noisy} noisy, complete={table.complete}"
        f" ({table.fingerprint.get('precision')}{extra})"
    )
    note = profile_note(table)
    if note:
        print(f"  {note}")
    return 0


def format_info(table: LatencyTable) -> str:
    """Human-readable summary: provenance, then one row per key."""
    fp = table.fingerprint
    lines = [
        f"LUT {table.source}",
        f"  space {table.space}  complete={table.complete}  created {table.created}",
        f"  {fp['runtime']} {fp['runtime_version']} {fp['provider']}  threads={fp['threads']}  "
        f"batch={fp['batch']}  resolution={fp['resolution']}  precision={fp['precision']}",
        f"  device {describe_device(fp)}",
        f"  cpu {fp['cpu_model']} ({fp['cpu_count']} cores)  {fp['platform']}  python {fp['python']}"
        + ("" if "cpu_isa" in fp else "  (no device identity recorded: the device cannot be verified)"),
        f"  {len(table)} keys, {table.n_points()} points",
        "  protocol " + " ".join(f"{k}={v}" for k, v in table.protocol.items()),
        "",
    ]
    rows = [("key", "widths", "latency ms", "max cv", "noisy")]
    for key in table.keys():
        e = table.entry(key)
        ws = e["widths"]
        wtxt = "-" if ws == [None] else f"{ws[0]}..{ws[-1]} ({len(ws)})"
        lat = e["latency_ms"]
        ltxt = f"{lat[0]:.3f}" if len(lat) == 1 else f"{min(lat):.3f}..{max(lat):.3f}"
        rows.append((key, wtxt, ltxt, f"{max(e['cv']):.1%}", str(sum(e["noisy"]))))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # a killed run still saves its work
    try:
        if args.command == "run":
            return _run(args)
        print(format_info(LatencyTable.load(args.lut)))
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; measured entries are saved, run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
