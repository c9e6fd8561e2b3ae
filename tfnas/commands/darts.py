"""``tfnas darts ACTION``: DARTS-family cell search, evaluation networks, training and latency bundles.

search (a config -> a genotype), eval (a genotype's network: params, mult-adds, ONNX, latency), train, genotypes
(the published ones) and bundle (cell ops at a deployment shape, to profile): each one call into ``tfnas.darts``
(run, evaluate, train, draw, bundle). ``tfnas darts ACTION --help`` lists the flags.
"""

from __future__ import annotations

import argparse
import functools
import json

from tfnas_base.atomic import atomic_write_json

_say = functools.partial(print, flush=True)  # a line before a long step shows before the step starts


def _run_flags(p: argparse.ArgumentParser, section: str, out: str) -> None:
    """A search's or a training's flags: a resumable run folder, and config keys (each flag's dest is its key)."""
    p.add_argument("--data", dest="data.source", metavar="DATA", help="generated (default), CIFAR-10 or ImageFolder")
    p.add_argument("--out", help=f"run folder (default {out})")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--epochs", dest=f"{section}.epochs", metavar="EPOCHS", type=int, help=f"override {section}.epochs")
    p.add_argument("--threads", dest="runtime.threads", metavar="THREADS", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", dest="runtime.progress", action="store_const", const=False, help="no progress")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a tfnas run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="darts_command", metavar="ACTION", required=True)
    p = sub.add_parser("search", help="run a DARTS-family search from a YAML config")
    p.add_argument("--config", required=True, help="DARTS config YAML, or a shipped one's name (configs/darts/)")
    _run_flags(p, "search", "runs/darts/<config name>")
    p.set_defaults(func=_search)
    p = sub.add_parser("eval", help="build an evaluation network: params, mult-adds, ONNX export, latency")
    p.add_argument("--genotype", required=True, help="published name (see `genotypes`) or genotype JSON")
    p.add_argument("--setting", choices=("cifar", "imagenet"), default="cifar")
    p.add_argument("--C", type=int, help="initial channels (36 cifar / 48 imagenet)")
    p.add_argument("--cells", type=int, help="number of cells (20 cifar / 14 imagenet)")
    p.add_argument("--classes", type=int)
    p.add_argument("--resolution", type=int, help="input size (32 cifar / 224 imagenet)")
    p.add_argument("--onnx", help="export to this ONNX file (checked, parity-tested)")
    p.add_argument("--measure", action="store_true", help="time the ONNX graph with ONNX Runtime")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for --measure")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", help="write the report as JSON")
    p.set_defaults(func=_eval)
    p = sub.add_parser("train", help="train an evaluation network from scratch")
    p.add_argument("--genotype", required=True)
    p.add_argument("--config", help="YAML with setting/net/data/train sections")
    _run_flags(p, "train", "runs/darts_train/<genotype name>")
    p.set_defaults(func=_train)
    p = sub.add_parser("genotypes", help="list published genotypes (optionally draw them)")
    p.add_argument("--show", metavar="NAME", help="print one genotype as JSON")
    p.add_argument("--plot", metavar="DIR", help="draw every cell into DIR")
    p.set_defaults(func=_genotypes)
    p = sub.add_parser("bundle", help="write a profiling bundle of cell ops at a deployment shape")
    p.add_argument("--space", default="s0")
    p.add_argument("--out", required=True)
    p.add_argument("--deploy", default="", help="comma list, e.g. C=36,num_cells=20,resolution=32,batch=1")
    p.add_argument("--profile", metavar="LUT", help="also measure it locally into this LUT JSON")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_bundle)


def _search(args: argparse.Namespace) -> None:
    from tfnas.darts.run import run_darts_search

    keys = {k: v for k, v in vars(args).items() if "." in k}  # the config keys the flags set
    done = run_darts_search(args.config, args.out, keys, args.resume, args.force, say=_say)
    r = done.result
    print(f"done in {done.seconds:.1f}s ({r.epochs_done} epochs{', early-stopped' if r.early_stopped else ''})")
    for name, cell in [("normal", c) for c in r.genotype.normal] + [("reduce", c) for c in r.genotype.reduce]:
        print(f"  {name}: {', '.join(f'{node}<-{op}<-{src}' for (op, src), node in zip(cell.edges, cell.targets))}")
    if done.budget:
        print(done.budget)
    print(f"genotype: {done.genotype_path}")


def _eval(args: argparse.Namespace) -> None:
    from tfnas.darts.evaluate import evaluate_genotype

    report = evaluate_genotype(args.genotype, args.setting, num_classes=args.classes, C=args.C, num_cells=args.cells,
                               resolution=args.resolution, batch=args.batch, onnx=args.onnx, measure=args.measure,
                               threads=args.threads, say=_say)  # fmt: skip
    if args.json:
        atomic_write_json(args.json, report)


def _train(args: argparse.Namespace) -> None:
    from tfnas.darts.train import run_darts_train

    keys = {k: v for k, v in vars(args).items() if "." in k}  # the config keys the flags set
    report = run_darts_train(args.genotype, args.config, args.out, keys, args.resume, args.force)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))


def _genotypes(args: argparse.Namespace) -> None:
    from tfnas.darts.draw import plot_published
    from tfnas.darts.space import PUBLISHED, get_genotype

    if args.show:
        print(json.dumps(get_genotype(args.show).to_dict(), indent=1))
        return
    for name, g in PUBLISHED.items():
        print(f"{name:20s} {g.meta.get('source', '')}")
    if args.plot:
        plot_published(args.plot)
        print(f"cells drawn into {args.plot}")


def _bundle(args: argparse.Namespace) -> None:
    from tfnas.darts.bundle import make_darts_bundle

    make_darts_bundle(args.space, args.deploy, args.out, args.profile, args.threads, say=_say)


def run(args: argparse.Namespace) -> None:
    args.func(args)
