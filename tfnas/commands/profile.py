"""``tfnas profile``: build a latency table locally (bundle + profilers, or torch-cuda), resumably."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from profilers.timing import TimingProtocol
from tfnas.commands.bundle import add_grid_arguments, grid_from_args
from tfnas.errors import TfnasError
from tfnas.latency.bundle import write_bundle
from tfnas.latency.table import profiler_errors
from tfnas.spaces.mbv2 import load_space

# Per-op graphs take 0.05-10 ms. Two whole-bundle passes (a load burst hits one pass of a point, not
# both) with a 0.15 s cap per graph and pass keep the full sparse TF-NAS LUT (~1200 graphs) within
# 15 minutes on 2 busy CPU cores.
PROFILE_PROTOCOL = TimingProtocol(
    warmup=3, min_repeats=10, max_repeats=200, target_rel_ci=0.01, max_time_s=0.15, remeasure_attempts=1, passes=2
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="tfnas_imagenet", help="space name or YAML path")
    p.add_argument("--batch", type=int, default=1, help="deployment batch size")
    p.add_argument("--resolution", type=int, default=None, help="deployment resolution (default: the space's)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (CPU backends)")
    p.add_argument("--backend", default="ort", help="ort (CPU), tensorrt (GPU) or torch-cuda (GPU, no TensorRT)")
    p.add_argument("--out", required=True, help="LUT JSON to write (an existing one is resumed)")
    p.add_argument("--work", default=None, help="bundle folder (default: <out>.bundle next to the LUT)")
    p.add_argument("--max-time", type=float, default=PROFILE_PROTOCOL.max_time_s, help="time cap per graph, s")
    p.add_argument("--passes", type=int, default=PROFILE_PROTOCOL.passes, help="whole-bundle timing passes")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_grid_arguments(p)


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    grid = grid_from_args(args)
    if args.threads < 1 or args.batch < 1:
        raise TfnasError(f"--threads {args.threads} / --batch {args.batch}: both must be >= 1")
    protocol = TimingProtocol(**{**PROFILE_PROTOCOL.to_dict(), "max_time_s": args.max_time, "passes": args.passes})
    out = Path(args.out)
    if not args.no_resume and out.exists() and out.stat().st_size == 0:  # fail before the bundle export
        raise TfnasError(f"{out} is empty (an interrupted write?); use --no-resume to start over")
    t0 = time.perf_counter()
    if args.backend == "torch-cuda":
        from tfnas.latency.torch_cuda import profile_space

        with profiler_errors():
            table = profile_space(
                space, out, args.batch, args.resolution, grid, protocol, not args.no_resume, not args.quiet
            )
    else:
        from profilers.run import profile_bundle

        work = Path(args.work) if args.work else out.with_name(out.name + ".bundle")
        write_bundle(space, work, args.batch, args.resolution, grid, progress=not args.quiet)
        t1 = time.perf_counter()
        with profiler_errors():
            table = profile_bundle(
                work, out, args.backend, args.threads, protocol, progress=not args.quiet, resume=not args.no_resume
            )
        table.meta["bundle_s"] = round(t1 - t0, 1)
    table.meta["build_s"] = round(time.perf_counter() - t0, 1)
    with profiler_errors():
        table.save(out)
    noisy = sum(sum(table.entry(k)["noisy"]) for k in table.keys())
    print(
        f"{out}: {len(table)} signatures, {table.n_points()} points, {noisy} noisy,"
        f" {table.meta['build_s']:.0f} s{'' if table.complete else ' (INCOMPLETE)'}"
    )
    return 0
