"""``tfnas search``: TF-NAS under a latency target, from a YAML config.

    tfnas search --config configs/search/tfnas_cpu_demo.yaml [--target-ms 40] [--data PATH|generated]
                 [--out DIR] [--resume]

Multi-GPU: ``torchrun --nproc_per_node N -m tfnas search --config ...`` (same config).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, help="search config YAML, or a shipped one by name (configs/search/*.yaml)"
    )
    parser.add_argument("--target-ms", type=float, default=None, help="latency target in ms (overrides the config)")
    parser.add_argument("--data", default=None, help="'generated', a CIFAR-10 folder or an ImageFolder tree")
    parser.add_argument("--lut", default=None, help="latency table JSON (overrides the config)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/search/<name>)")
    parser.add_argument("--epochs", type=int, default=None, help="override search.epochs")
    parser.add_argument("--seed", type=int, default=None, help="override the seed")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a tfnas run")


def deployment_shape(lat: Any) -> str:
    """What a latency budget refers to: the table's input shape and the device it was measured on."""
    from tfnas.latency.table import device_match, table_device

    table = lat.lookup.table
    match = device_match(table)
    here = "this machine" if match.same_device else "NOT this machine" if match.verifiable else "unverified device"
    return f"{lat.resolution}x{lat.resolution} on {table_device(table)} ({here}; table {table.source})"


def build_config(args: argparse.Namespace) -> dict:
    from tfnas.resources import find_config
    from tfnas.search.tfnas.config import load_config, resolve_config

    cfg = load_config(find_config(args.config, "search"))
    if args.target_ms is not None:
        cfg["target_ms"] = args.target_ms
    if args.data is not None:
        cfg["data"]["source"] = args.data
    if args.lut is not None:
        cfg["lut"] = args.lut
    if args.epochs is not None:
        warm = cfg["search"]["warmup_epochs"]
        if args.epochs <= warm:
            raise ConfigError(
                f"--epochs {args.epochs} leaves no architecture step after the {warm} warm-up epochs of"
                f" {args.config} (search.warmup_epochs), so nothing would be searched; pass --epochs > {warm}"
            )
        cfg["search"]["epochs"] = args.epochs
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.no_progress:
        cfg["runtime"]["progress"] = False
    if args.out is not None:
        cfg["out"] = args.out
    cfg["out"] = cfg["out"] or str(Path("runs") / "search" / cfg["name"])
    return resolve_config(cfg, args.config)


def run(args: argparse.Namespace) -> int:
    from tfnas.search.common import claim_run_dir
    from tfnas.search.tfnas.searcher import TFNASSearch
    from tfnas.utils.distributed import cleanup, init_distributed

    cfg = build_config(args)
    if str(cfg["lut"]) == "auto":
        choose_lut(cfg, show_progress=cfg["runtime"]["progress"])
    device = cfg["runtime"]["device"]
    info = init_distributed(None if device == "auto" else device)
    try:
        if info.is_main:
            claim_run_dir(cfg["out"], args.resume, args.force)
        search = TFNASSearch(cfg, cfg["out"], resume=args.resume, dist_info=info)
        shape = deployment_shape(search.lat)
        if info.is_main:
            print(f"search: target {search.target:g} ms at {shape} -> {cfg['out']}", flush=True)
        result = search.run()
    finally:
        cleanup(info)
    if info.is_main:
        err = 100.0 * (result.predicted_ms / result.target_ms - 1.0)
        print(f"derived architecture: {result.arch_path}")
        print(f"predicted latency {result.predicted_ms:.3f} ms, target {result.target_ms:g} ms ({err:+.2f}%)")
        print(f"  at {shape}")
        _explain_loop(result.report_path)
        print(f"report: {result.report_path}")
        report_measured(result, search.lat.lookup.table)
    return 0


def _explain_loop(report_path: Path) -> None:
    """Why the prediction may sit off the target after the closed loop (search.measure_final)."""
    import json

    loop = [row for row in json.loads(Path(report_path).read_text()).get("measured_loop", []) if "iteration" in row]
    if len(loop) > 1:
        ratio = loop[0]["measured_ms"] / loop[0]["predicted_ms"]
        print(
            f"  closed loop: the first derived net measured {ratio:.3f}x its prediction on this machine now"
            f" (the host's drift since calibration, and the ops a search favours), so the widths were re-aimed"
            f" {len(loop) - 1} time(s) until the measurement hit the target"
        )


def choose_lut(cfg: dict, show_progress: bool = True) -> None:
    """``lut: auto``: a table of this machine (shipped, cached, or profiled now); says which it took."""
    import os

    from tfnas.errors import ConfigError
    from tfnas.latency.select import choose_table
    from tfnas.spaces.mbv2 import load_space

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("lut: auto profiles this machine; in a multi-process run name the table (lut: PATH)")
    space = load_space(cfg["space"])
    resolution = cfg["lut_resolution"] or space.resolution
    choice = choose_table(space, resolution, progress=show_progress)
    cfg["lut"] = str(choice.path)
    print(f"latency table: {choice.path} ({choice.note})")


def report_measured(result, table) -> None:
    """Target / predicted / measured on this machine, when it is the table's device (``measured.json``)."""
    from tfnas.latency.measure import measure_on_table_device
    from tfnas.latency.table import table_device
    from tfnas.utils.io import atomic_write_json

    m = measure_on_table_device(result.arch, table)
    if m is None:
        print(
            f"not measured here: this machine is not (or cannot be verified as) the table's device ({table_device(table)})"
        )
        return
    err = 100.0 * (m["measured_ms"] / result.target_ms - 1.0)
    print(
        f"target {result.target_ms:g} ms | predicted {result.predicted_ms:.3f} ms | measured here"
        f" {m['measured_ms']:.3f} ms ({err:+.2f}%; {m['statistic']})"
    )
    atomic_write_json(
        result.arch_path.parent / "measured.json",
        {"target_ms": result.target_ms, "predicted_ms": result.predicted_ms, "device": table_device(table), **m},
    )
