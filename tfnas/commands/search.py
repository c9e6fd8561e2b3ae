"""``tfnas search``: TF-NAS under a latency target, from a YAML config.

    tfnas search --config configs/search/tfnas_cpu_demo.yaml [--target-ms 40] [--data PATH|generated]
                 [--out DIR] [--resume]

Multi-GPU: ``torchrun --nproc_per_node N -m tfnas search --config ...`` (same config).
"""

from __future__ import annotations

import argparse

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


def overrides(args: argparse.Namespace) -> dict:
    """The command line's settings as dotted config keys (validated with the file)."""
    return {
        "target_ms": args.target_ms,
        "data.source": args.data,
        "lut": args.lut,
        "search.epochs": args.epochs,
        "seed": args.seed,
        "runtime.progress": False if args.no_progress else None,
        "out": args.out,
    }


def run(args: argparse.Namespace) -> int:
    from tfnas.mbv2.search.config import load_config
    from tfnas.mbv2.search.run import explain_loop, provide_table, run_search
    from tfnas.resources import find_config

    path = find_config(args.config, "search")
    flags = overrides(args)
    if args.epochs is not None:  # say it in terms of the flag, before the schema's cross-check does
        warm = load_config(path, {**flags, "search.epochs": None}).search.warmup_epochs
        if args.epochs <= warm:
            raise ConfigError(
                f"--epochs {args.epochs} leaves no architecture step after the {warm} warm-up epochs of"
                f" {args.config} (search.warmup_epochs), so nothing would be searched; pass --epochs > {warm}"
            )
    cfg = provide_table(load_config(path, flags), args.resume)
    outcome = run_search(cfg, args.resume, args.force)
    result = outcome.result
    if result is None:
        return 0
    err = 100.0 * (result.predicted_ms / result.target_ms - 1.0)
    print(f"derived architecture: {result.arch_path}")
    print(f"predicted latency {result.predicted_ms:.3f} ms, target {result.target_ms:g} ms ({err:+.2f}%)")
    print(f"  at {outcome.shape}")
    if result.held_out_acc is not None:
        print(
            f"supernet held-out top-1 {result.held_out_acc:.1%} (chance {result.chance_acc:.1%}): "
            + ("above chance (whether it also ranks networks well: tfnas compare, Kendall tau)"
               if result.held_out_acc > 2 * result.chance_acc else
               "near chance: the architecture was chosen by latency alone; search longer")
        )  # fmt: skip
    if result.slice_acc is not None:
        print(f"  the derived architecture's slice of the supernet: held-out top-1 {result.slice_acc:.1%}")
    note = explain_loop(result.report_path)
    if note:
        print(f"  {note}")
    print(f"report: {result.report_path}")
    m = outcome.measured
    if m is None:
        print(
            f"not measured here: this machine is not (or cannot be verified as) the table's device ({outcome.device})"
        )
    elif m["measured_ms"] is None:
        print(f"target {result.target_ms:g} ms | predicted {result.predicted_ms:.3f} ms | measured here: {m['note']}")
    else:
        err = 100.0 * (m["measured_ms"] / result.target_ms - 1.0)
        u = f" +/- {m['uncertainty_ms']:.3f}" if m.get("uncertainty_ms") is not None else ""
        print(
            f"target {result.target_ms:g} ms | predicted {result.predicted_ms:.3f} ms | measured here"
            f" {m['measured_ms']:.3f} ms{u} ({err:+.2f}%; raw {m['raw_ms']:.3f} ms)"
        )
        print(f"  {m['statistic']}")
    return 0
