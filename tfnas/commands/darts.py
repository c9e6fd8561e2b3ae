"""``tfnas darts``: DARTS-family cell search, evaluation networks, training and latency bundles.

tfnas darts search --config configs/darts/darts_1st.yaml [--data generated|PATH] [--out DIR] [--resume]
tfnas darts eval --genotype DARTS_V2 [--setting cifar|imagenet] [--onnx out.onnx] [--measure]
tfnas darts train --genotype runs/x/genotype.json [--config CFG] [--data PATH] [--out DIR] [--resume]
tfnas darts genotypes [--plot DIR]
tfnas darts bundle --space s0 --out DIR [--deploy C=36,num_cells=20,resolution=32] [--profile LUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.resources import find_config
from tfnas.utils.io import atomic_write_json, read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="darts_command", metavar="ACTION", required=True)

    p = sub.add_parser("search", help="run a DARTS-family search from a YAML config")
    p.add_argument(
        "--config", required=True, help="DARTS config YAML, or a shipped one by name (configs/darts/<method>.yaml)"
    )
    p.add_argument("--data", default=None, help="'generated' (default from config), a CIFAR-10 or ImageFolder path")
    p.add_argument("--out", default=None, help="run folder (default runs/darts/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--epochs", type=int, default=None, help="override search.epochs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a tfnas run")

    p = sub.add_parser("eval", help="build an evaluation network: params, mult-adds, ONNX export, latency")
    p.add_argument("--genotype", required=True, help="published name (see `genotypes`) or genotype JSON")
    p.add_argument("--setting", choices=("cifar", "imagenet"), default="cifar")
    p.add_argument("--C", type=int, default=None, help="initial channels (36 cifar / 48 imagenet)")
    p.add_argument("--cells", type=int, default=None, help="number of cells (20 cifar / 14 imagenet)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None, help="input size (32 cifar / 224 imagenet)")
    p.add_argument("--onnx", default=None, help="export to this ONNX file (checked, parity-tested)")
    p.add_argument("--measure", action="store_true", help="time the ONNX graph with ONNX Runtime")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for --measure")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None, help="write the report as JSON")

    p = sub.add_parser("train", help="train an evaluation network from scratch")
    p.add_argument("--genotype", required=True)
    p.add_argument("--config", default=None, help="YAML with setting/net/data/train sections")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.threads)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a tfnas run")

    p = sub.add_parser("genotypes", help="list published genotypes (optionally draw them)")
    p.add_argument("--show", default=None, metavar="NAME", help="print one genotype as JSON")
    p.add_argument("--plot", default=None, metavar="DIR", help="draw every cell into DIR")

    p = sub.add_parser("bundle", help="write a profiling bundle of cell ops at a deployment shape")
    p.add_argument("--space", default="s0")
    p.add_argument("--out", required=True)
    p.add_argument("--deploy", default="", help="comma list, e.g. C=36,num_cells=20,resolution=32,batch=1")
    p.add_argument("--profile", default=None, metavar="LUT", help="also measure it locally into this LUT JSON")
    p.add_argument("--threads", type=int, default=1)


def _overrides(args: argparse.Namespace, section: str) -> dict:
    """The command line's settings (--data, --epochs, --threads) as dotted config keys, validated with the file."""
    return {
        "data.source": args.data,
        f"{section}.epochs": args.epochs,
        "runtime.threads": args.threads,
        "runtime.progress": False if args.no_progress else None,
    }


def _search(args: argparse.Namespace) -> int:
    from tfnas.darts.config import load_search_config
    from tfnas.darts.search import DartsSearch
    from tfnas.train.common import claim_run_dir

    cfg = load_search_config(find_config(args.config, "darts"), _overrides(args, "search"))
    out = Path(args.out or Path("runs") / "darts" / Path(args.config).stem)
    claim_run_dir(out, args.resume, args.force)
    t0 = time.time()
    search = DartsSearch(cfg, out)
    print(
        f"DARTS search: method {search.method.name}, space {search.model.space.name}, "
        f"{search.epochs} epochs x {search.steps_per_epoch} steps, data {search.data.source} -> {out}"
    )
    deploy = _latency_budget(search)
    if deploy:
        print(deploy, flush=True)
    result = search.run(resume=args.resume)
    print(
        f"done in {time.time() - t0:.1f}s ({result.epochs_done} epochs{', early-stopped' if result.early_stopped else ''})"
    )
    for name, cell in [("normal", c) for c in result.genotype.normal] + [("reduce", c) for c in result.genotype.reduce]:
        edges = (f"{node}<-{op}<-{src}" for (op, src), node in zip(cell.edges, cell.targets))
        print(f"  {name}: {', '.join(edges)}")
    if deploy:
        print(deploy)
    print(f"genotype: {out / 'genotype.json'}")
    return 0


def _latency_budget(search: Any) -> str:
    """The deployment shape and device a latency-aware search's budget refers to ('' without one)."""
    from tfnas.latency.table import table_device

    lat = search.cfg.latency
    if lat is None:
        return ""
    reg = next(r for r in search.method.regularizers if r.name == "latency")
    return (
        f"latency budget {lat.target_ms:g} ms for the deployed net C={lat.deploy.C}, {lat.deploy.num_cells} cells,"
        f" {lat.deploy.resolution}x{lat.deploy.resolution}, batch {lat.deploy.batch}, on {table_device(reg.table)}"
        f" (table {reg.table.source})"
    )


def _eval_report(args: argparse.Namespace) -> dict[str, Any]:
    from tfnas.darts.network import build_eval_net, count_params_without_aux
    from tfnas.darts.shapes import SETTINGS
    from tfnas.darts.space import get_genotype
    from tfnas.utils.flops import count_macs

    genotype = get_genotype(args.genotype)
    net = build_eval_net(genotype, args.setting, args.classes, C=args.C, num_cells=args.cells)
    res = args.resolution or SETTINGS[args.setting]["data"]["resolution"]
    shape = (args.batch, net.in_channels, res, res)
    report: dict[str, Any] = {
        "genotype": str(args.genotype),
        "setting": args.setting,
        "C": net.net.C,
        "num_cells": net.net.num_cells,
        "resolution": res,
        "params_without_aux": count_params_without_aux(net),
        "mult_adds": count_macs(net, (1, net.in_channels, res, res)),
    }
    print(
        f"{args.genotype} ({args.setting}, C={net.net.C}, {net.net.num_cells} cells): "
        f"{report['params_without_aux'] / 1e6:.3f} M params (no aux head), "
        f"{report['mult_adds'] / 1e6:.1f} M mult-adds at {res}x{res}"
    )
    if args.onnx or args.measure:
        # --measure alone times a temporary file: nothing is written into the working folder
        with tempfile.TemporaryDirectory(prefix="tfnas-darts-eval-") as tmp:
            path = Path(args.onnx) if args.onnx else Path(tmp) / "eval_net.onnx"
            _export_and_measure(net, path, shape, args, report)
            if not args.onnx:
                report["onnx"] = None
    return report


def _export_and_measure(net: Any, path: Path, shape: tuple, args: argparse.Namespace, report: dict) -> None:
    from tfnas.export.onnx import check_parity, export_onnx

    export_onnx(net, path, shape)
    report["onnx"] = str(path)
    report["parity_max_abs_diff"] = check_parity(net, path, shape, atol=1e-4)
    print(f"ONNX: {path if args.onnx else '(temporary)'} (checker ok, max |torch - ort| = "
          f"{report['parity_max_abs_diff']:.2e})")  # fmt: skip
    if args.measure:
        from tfnas.latency.measure import onnx_drift_cancelled, onnx_timer

        fig = onnx_drift_cancelled([onnx_timer(path, shape, "ort", args.threads)], args.threads)[0][0]
        report["latency_ms"] = fig.to_dict()
        print(f"latency (ort, {args.threads} thread(s), batch {args.batch}): {fig.describe()}")


def _eval(args: argparse.Namespace) -> int:
    report = _eval_report(args)
    if args.json:
        atomic_write_json(args.json, report)
    return 0


def _train(args: argparse.Namespace) -> int:
    from tfnas.config import apply_overrides, validate
    from tfnas.darts.config import DartsTrainConfig, load_train_config
    from tfnas.darts.space import get_genotype
    from tfnas.darts.train import train_eval_net
    from tfnas.train.common import claim_run_dir

    genotype = get_genotype(args.genotype)
    overrides = _overrides(args, "train")
    if args.config:
        cfg = load_train_config(args.config, overrides)
    else:
        cfg = validate(DartsTrainConfig, apply_overrides({}, overrides), "tfnas darts train")
    out = Path(args.out or Path("runs") / "darts_train" / Path(str(args.genotype)).stem)
    claim_run_dir(out, args.resume, args.force)
    report = train_eval_net(genotype, cfg, out, resume=args.resume)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))
    return 0


def _genotypes(args: argparse.Namespace) -> int:
    from tfnas.darts.space import PUBLISHED, get_genotype

    if args.show:
        print(json.dumps(get_genotype(args.show).to_dict(), indent=1))
        return 0
    for name, g in PUBLISHED.items():
        print(f"{name:20s} {g.meta.get('source', '')}")
    if args.plot:
        from tfnas.darts.draw import plot_genotype

        for name, g in PUBLISHED.items():
            plot_genotype(g, args.plot, prefix=name)
        print(f"cells drawn into {args.plot}")
    return 0


def _parse_deploy(text: str) -> dict[str, int]:
    """``C=36,num_cells=20`` -> raw values for the ``DeployShape`` schema (which checks names and ranges)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"--deploy: expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = int(v)
        except ValueError:
            raise ConfigError(f"--deploy: {k} must be an integer, got {v!r}") from None
    return out


def _bundle(args: argparse.Namespace) -> int:
    from tfnas.config import validate
    from tfnas.darts.latency import write_darts_bundle
    from tfnas.darts.shapes import DeployShape
    from tfnas.darts.space import load_cell_space

    shape = validate(DeployShape, _parse_deploy(args.deploy), "--deploy")
    out = write_darts_bundle(load_cell_space(args.space), shape, args.out)
    n = len(read_json(out / "manifest.json", "bundle manifest")["entries"])
    print(f"bundle: {out} ({n} graphs, deploy {shape})")
    if args.profile:
        from profilers.run import profile_bundle
        from profilers.timing import PROFILE_PROTOCOL

        table = profile_bundle(out, args.profile, backend="ort", threads=args.threads, protocol=PROFILE_PROTOCOL)
        print(f"latency table: {args.profile} ({len(table)} keys)")
    return 0


ACTIONS = {"search": _search, "eval": _eval, "train": _train, "genotypes": _genotypes, "bundle": _bundle}


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.darts_command](args)
