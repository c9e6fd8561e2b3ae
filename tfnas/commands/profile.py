"""``tfnas profile``: build a latency table locally (bundle + profilers, or torch-cuda), resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from profilers.timing import PROFILE_PROTOCOL, TimingProtocol
from tfnas.commands.bundle import add_grid_arguments, grid_from_args
from tfnas.mbv2.profile import profile_table
from tfnas.mbv2.space import load_space


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="tfnas_imagenet", help="space name or YAML path")
    p.add_argument("--batch", type=int, default=1, help="deployment batch size")
    p.add_argument("--resolution", type=int, default=None, help="deployment resolution (default: the space's)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (CPU backends)")
    p.add_argument("--backend", default="ort", help="ort (CPU), tensorrt (GPU) or torch-cuda (GPU, no TensorRT)")
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="int8 (--backend ort): each graph quantized statically (QDQ, per-channel int8 weights, uint8"
        " activations, generated calibration tensors) before it is timed; name the table ...-int8.json",
    )
    p.add_argument(
        "--quantize-workers", type=int, default=None, help="int8: quantizing processes (default: the usable cores)"
    )
    p.add_argument("--out", required=True, help="LUT JSON to write (an existing one is resumed)")
    p.add_argument("--work", default=None, help="bundle folder (default: <out>.bundle next to the LUT)")
    p.add_argument("--max-time", type=float, default=PROFILE_PROTOCOL.max_time_s, help="time cap per graph, s")
    p.add_argument("--passes", type=int, default=PROFILE_PROTOCOL.passes, help="whole-bundle timing passes")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_grid_arguments(p)


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    protocol = TimingProtocol(**{**PROFILE_PROTOCOL.to_dict(), "max_time_s": args.max_time, "passes": args.passes})
    out = Path(args.out)
    if args.backend == "ort":  # say which device the table will describe before minutes of timing
        from profilers.device import describe_device
        from profilers.fingerprint import current_fingerprint

        res = args.resolution or space.resolution
        fp = current_fingerprint(args.threads, batch=args.batch, resolution=res, precision=args.precision)
        print(f"profiling {space.name} on {describe_device(fp)}", flush=True)
    table = profile_table(
        space, out, args.batch, args.resolution, args.threads, args.backend, grid_from_args(args), protocol,
        resume=not args.no_resume, work=args.work, progress=not args.quiet, precision=args.precision,
        quantize_workers=args.quantize_workers,
    )  # fmt: skip
    noisy = sum(sum(table.entry(k)["noisy"]) for k in table.keys())
    last = table.meta["builds"][-1]
    quant = f", quantizing {last['quantize_s']:.0f} s" if last.get("quantize_s") is not None else ""
    print(
        f"{out}: {len(table)} signatures, {table.n_points()} points ({args.precision}), {noisy} noisy; this run"
        f" measured {last['points_measured']} points in {last['bundle_s'] + last['timing_s']:.0f} s"
        f" (bundle {last['bundle_s']:.0f} s{quant}){'' if table.complete else ' (INCOMPLETE)'}"
    )
    from profilers.run import profile_note

    if profile_note(table):
        print(f"  {profile_note(table)}")
    return 0
