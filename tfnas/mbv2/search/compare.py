"""Does the search beat chance at the same latency? Searched networks against random and uniform ones.

``compare`` takes one or more searched architectures (or finished search runs), a latency table and
data. It draws ``random`` architectures of the same space (seeded, *before* anything is trained), adds
the uniform baselines (one op everywhere), brings every network to the same predicted latency with the
search's own width fitting (``tfnas.mbv2.search.elastic.hit_target``), optionally times each one on this
machine (when it is the table's device), trains all of them with one recipe, and reports each
network's top-1 on the data's test split, each searched network's rank among the random ones, and a
plot of accuracy against latency. Given a search run folder as ``supernet``, it also scores every
network's slice of that search's supernet on the search's held-out split (``inherited.json``, before any
training) and reports the Kendall tau of the inherited against the stand-alone accuracies: does the
supernet rank networks as training them does? Every network trains in its own resumable run folder;
``plan.json`` (written first) fixes the networks, ``results.json`` / ``results.csv`` / ``accuracy_vs_latency.png``
hold the outcome. ``jobs`` > 1 trains networks in parallel processes (each with ``threads`` threads).
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from tfnas.config.loader import Schema
from tfnas.data import build_datasets
from tfnas.errors import ConfigError
from tfnas.latency.measure import TimingSettings, measure_table_drift_cancelled
from tfnas.latency.table import device_match, open_table, table_grid
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.keys import SpaceNeeds
from tfnas.mbv2.measure import networks
from tfnas.mbv2.net import build_model
from tfnas.mbv2.search.build import check_target
from tfnas.mbv2.search.elastic import hit_target
from tfnas.mbv2.search.inherit import inherited_accuracy, is_search_run, kendall_tau, load_supernet
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.space import MBV2Space, load_space
from tfnas.train.common import claim_run_dir
from tfnas.train.loop import TrainRecipe, train_network
from tfnas.utils.io import read_json, save_figure
from tfnas.utils.seed import seed_everything
from tfnas_base.atomic import atomic_write_json, atomic_write_text

Say = Callable[[str], None]


class CompareConfig(Schema):
    """How the networks are drawn, trained and timed (the same for every network)."""

    data: str = "generated"  # generated | shapes[:difficulty] | digits | a CIFAR-10 / ImageFolder folder
    resolution: int = Field(32, ge=4)  # training resolution (the latency is the table's deployment shape)
    num_samples: int = Field(4000, ge=2)  # generated data only
    batch_size: int = Field(64, ge=1)
    recipe: TrainRecipe = Field(default_factory=TrainRecipe)
    random: int = Field(10, ge=0)  # random architectures drawn
    uniform: list[str] | None = None  # ops of the uniform baselines (None: every op of the space)
    seed: int = Field(0, ge=0)  # draws the random architectures
    measure: bool = True  # time each network here when this machine is the table's device
    measure_rounds: int = Field(5, ge=1)
    tolerance: float = Field(0.003, gt=0, lt=0.5)  # predicted latency within this fraction of the budget
    jobs: int = Field(1, ge=1)  # networks trained at once (processes)
    threads: int = Field(0, ge=0)  # torch threads per job (0: cores / jobs)


@dataclass
class Entry:
    """One network of a comparison."""

    name: str
    kind: str  # searched | random | uniform | any label given with the architecture
    arch: Architecture
    predicted_ms: float
    moves: list[str]

    def plan(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "predicted_ms": self.predicted_ms, "moves": self.moves,
                "arch": self.arch.to_dict()}  # fmt: skip


def _choice(lat: LatencyModel, arch: Architecture) -> tuple[list[int], list[int], list[int]]:
    """(op indices, widths, depths) of ``arch`` in the latency model's layer order."""
    layers = [c for stage in arch.stages for c in stage]
    return [lat.op_names.index(c.op) for c in layers], [c.width for c in layers], list(arch.depths)


def at_budget(lat: LatencyModel, arch: Architecture, target_ms: float, tolerance: float) -> tuple[Architecture, list]:
    """``arch`` moved to ``target_ms`` (predicted) by the search's own fitting: widths, then depth or op if needed."""
    ops, widths, depths = _choice(lat, arch)
    ops, widths, depths, moves = hit_target(lat, ops, widths, depths, target_ms, tolerance)
    return lat.to_arch(ops, widths, depths, dict(arch.meta)), moves


def draw_entries(
    space: MBV2Space,
    lat: LatencyModel,
    searched: Sequence[tuple[str, str, Architecture]],
    target_ms: float,
    cfg: CompareConfig,
) -> list[Entry]:
    """The networks of the comparison: the searched ones as they are (already at their budget), ``cfg.random``
    random ones and the uniform baselines, each moved to ``target_ms``. Seeded by ``cfg.seed`` only."""
    entries = [Entry(name, kind, a, lat.arch_ms(*_choice(lat, a)), []) for name, kind, a in searched]
    rng = random.Random(cfg.seed)
    for i in range(cfg.random):
        arch, moves = at_budget(lat, Architecture.random(space, rng, lat.resolution), target_ms, cfg.tolerance)
        entries.append(Entry(f"random_{i:02d}", "random", arch, lat.arch_ms(*_choice(lat, arch)), moves))
    for op in cfg.uniform if cfg.uniform is not None else list(space.ops):
        if op not in space.ops:
            raise ConfigError(f"uniform baseline op {op!r}: not an op of space {space.name} ({', '.join(space.ops)})")
        arch, moves = at_budget(lat, Architecture.uniform(space, op, lat.resolution), target_ms, cfg.tolerance)
        entries.append(Entry(f"uniform_{op}", "uniform", arch, lat.arch_ms(*_choice(lat, arch)), moves))
    return entries


def _train_one(name: str, arch_doc: dict, cfg_doc: dict, out: str, threads: int, space: str) -> dict[str, Any]:
    """Train one network in its own resumable run folder (a worker process, or in-process with one job)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = CompareConfig.model_validate(cfg_doc)
    arch = Architecture.from_dict(arch_doc, name, load_space(space))  # a YAML file or a shipped name
    run = Path(out)
    report = run / "train_report.json"
    if report.exists():
        return read_json(report, "train report")
    data = build_datasets(cfg.data, resolution=cfg.resolution, held_out_fraction=0.0, num_samples=cfg.num_samples,
                          seed=cfg.recipe.seed)  # fmt: skip
    seed_everything(cfg.recipe.seed)  # the same initialisation stream for every network
    model = build_model(arch, data.num_classes)
    resume = (run / "checkpoints" / "last.pt").exists()
    t0 = time.perf_counter()
    rep = train_network(model, data, cfg.recipe, run, batch_size=cfg.batch_size, config={"compare": cfg.to_dict()},
                        resume=resume, show_progress=False, report_extra={"arch": arch_doc})  # fmt: skip
    rep["train_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(report, rep)
    return rep


def _measure(entries: list[Entry], table: Any, rounds: int, say: Say) -> dict[str, float | None]:
    """Measured latency of every network here, timed as the table's graphs were (runtime, shape, precision,
    statistic), in interleaved rounds, drift-cancelled (the table's recorded reference time, else the one seen
    now); a network whose rounds were not clean says so and gets None."""
    say(f"timing {len(entries)} networks here ({rounds} interleaved rounds, drift-cancelled)")
    figs, _ = measure_table_drift_cancelled(networks([e.arch for e in entries]), table, TimingSettings(rounds))
    out: dict[str, float | None] = {}
    for e, f in zip(entries, figs):
        if not f.clean:
            say(f"  {e.name}: {f.describe()}")
        out[e.name] = f.value_ms if f.clean else None
    return out


def compare(
    searched: Sequence[tuple[str, str, Architecture]],
    table_path: str | Path,
    out_dir: str | Path,
    cfg: CompareConfig,
    target_ms: float | None = None,
    say: Say = print,
    supernet: str | Path | None = None,
) -> dict[str, Any]:
    """Compare ``searched`` (name, kind, architecture) with random and uniform networks; resumable in ``out_dir``.

    ``target_ms``: the budget (default: the first searched network's predicted latency). ``supernet``: a
    TF-NAS search run folder whose supernet scores every network (inherited accuracy) before training.
    """
    if not searched:
        raise ConfigError("compare: give at least one searched architecture (or search run)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = searched[0][2].space
    table = open_table(table_path, SpaceNeeds(space))
    lat = LatencyModel(space, table, None, True, table_grid(table).align)
    plan_path = out / "plan.json"
    space_source = space.source if Path(space.source).is_file() else space.name
    if plan_path.exists():  # a resumed comparison trains exactly the networks it planned
        plan = read_json(plan_path, "comparison plan")
        entries = [Entry(p["name"], p["kind"], Architecture.from_dict(p["arch"], str(plan_path), space),
                         p["predicted_ms"], p["moves"]) for p in plan["networks"]]  # fmt: skip
        target_ms = plan["target_ms"]
    else:
        if target_ms is not None:  # a budget no network of the space reaches is an error before anything trains
            if not target_ms > 0:
                raise ConfigError(f"compare: target {target_ms:g} ms; a latency budget must be > 0 ms")
            check_target(lat, target_ms)
        target_ms = target_ms or lat.arch_ms(*_choice(lat, searched[0][2]))
        entries = draw_entries(space, lat, searched, target_ms, cfg)
        atomic_write_json(plan_path, {"target_ms": target_ms, "table": str(table_path), "space": space_source,
                                      "config": cfg.to_dict(), "networks": [e.plan() for e in entries]})  # fmt: skip
    say(f"compare: {len(entries)} networks at {target_ms:.3f} ms (predicted) -> {out}")
    measured_path = out / "measured.json"
    measured: dict[str, float] = read_json(measured_path, "measurements") if measured_path.exists() else {}
    here = device_match(table).same_device
    if cfg.measure and here and not measured:
        measured = _measure(entries, table, cfg.measure_rounds, say)  # before training: a quiet machine
        atomic_write_json(measured_path, measured)
    inherited = _inherit_all(entries, supernet, out, say) if supernet is not None else {}
    trained = _train_all(entries, cfg, out, say, space_source)
    scored = {"supernet": None if supernet is None else str(Path(supernet).resolve()), "accs": inherited}
    return _summarise(entries, trained, measured, scored, target_ms, out, cfg, str(table_path), here)


def _inherit_all(entries: list[Entry], supernet: str | Path, out: Path, say: Say) -> dict[str, float]:
    """Every network's inherited accuracy (``inherited.json``, one network at a time: resumable). The
    supernet and its data are loaded only when a network is still unscored."""
    path, run = out / "inherited.json", str(Path(supernet).resolve())
    doc = read_json(path, "inherited accuracies") if path.exists() else {"supernet": run, "accs": {}}
    if doc["supernet"] != run:
        raise ConfigError(f"{path}: scored with the supernet of {doc['supernet']}, not {run}; use another --out")
    todo = [e for e in entries if e.name not in doc["accs"]]
    if todo:
        model, scfg, data = load_supernet(supernet)
        say(f"scoring {len(todo)} networks on the supernet of {supernet} ({len(data.held_out)} held-out samples)")
        for e in todo:
            doc["accs"][e.name] = inherited_accuracy(model, data.held_out, e.arch, scfg.search.batch_size, scfg.seed)
            atomic_write_json(path, doc)
    return dict(doc["accs"])


def _train_all(entries: list[Entry], cfg: CompareConfig, out: Path, say: Say, space: str) -> dict[str, dict]:
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.jobs)
    jobs = [(e.name, e.arch.to_dict(), cfg.to_dict(), str(out / "nets" / e.name), threads, space) for e in entries]
    done: dict[str, dict] = {}
    t0 = time.perf_counter()
    if cfg.jobs == 1:
        for job in jobs:
            done[job[0]] = _train_one(*job)
            say(f"  trained {job[0]}: top-1 {done[job[0]]['test_acc']:.3f} ({len(done)}/{len(jobs)}, "
                f"{time.perf_counter() - t0:.0f} s)")  # fmt: skip
        return done
    with ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, *job): job[0] for job in jobs}
        for f in as_completed(futures):
            done[futures[f]] = f.result()
            say(f"  trained {futures[f]}: top-1 {done[futures[f]]['test_acc']:.3f} ({len(done)}/{len(jobs)}, "
                f"{time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return done


def _summarise(
    entries: list[Entry], trained: dict, measured: dict, inherited: dict, target_ms: float, out: Path,
    cfg: CompareConfig, table: str, here: bool,
) -> dict[str, Any]:  # fmt: skip
    """``inherited``: {"supernet": its run folder or None, "accs": name -> inherited accuracy}."""
    rows = []
    for e in entries:
        rep = trained[e.name]
        rows.append({"name": e.name, "kind": e.kind, "predicted_ms": e.predicted_ms, "measured_ms": measured.get(e.name),
                     "test_acc": rep["test_acc"], "inherited_acc": inherited["accs"].get(e.name),
                     "params": rep["params"], "train_seconds": rep.get("train_seconds"),
                     "ops": [c.op for st, d in zip(e.arch.stages, e.arch.depths) for c in st[:d]],
                     "moves": e.moves})  # fmt: skip
    random_accs = sorted(r["test_acc"] for r in rows if r["kind"] == "random")
    for r in rows:
        if r["kind"] not in ("random", "uniform") and random_accs:
            r["random_beaten"] = sum(a < r["test_acc"] for a in random_accs)
            r["rank_among_random"] = 1 + sum(a > r["test_acc"] for a in random_accs)
    summary = {
        "target_ms": target_ms,
        "table": table,
        "measured_here": here and bool(measured),
        "config": cfg.to_dict(),
        "random_median_acc": statistics.median(random_accs) if random_accs else None,
        "random_accs": random_accs,
        "supernet": inherited["supernet"],
        **_ranking(rows),
        "networks": rows,
    }
    atomic_write_json(out / "results.json", summary)
    _write_csv(out / "results.csv", rows)
    plot_comparison(out / "accuracy_vs_latency.png", rows, target_ms)
    return summary


def _ranking(rows: list[dict]) -> dict[str, Any]:
    """Kendall tau-b of the inherited against the stand-alone top-1, over the networks scored both ways
    (None without a supernet, or when either scoring is constant)."""
    pairs = [(r["inherited_acc"], r["test_acc"]) for r in rows if r["inherited_acc"] is not None]
    tau = kendall_tau(*zip(*pairs)) if len(pairs) >= 2 else math.nan
    return {"kendall_tau_inherited_vs_standalone": None if math.isnan(tau) else tau, "kendall_tau_n": len(pairs)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = ["name", "kind", "predicted_ms", "measured_ms", "test_acc", "inherited_acc", "params", "train_seconds"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_comparison(path: Path, rows: list[dict], target_ms: float) -> Path:
    """Top-1 against latency (measured where timed, else predicted), one marker per kind of network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = {"random": ("o", "0.6"), "uniform": ("s", "tab:blue")}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        pts = [(r["measured_ms"] or r["predicted_ms"], r["test_acc"]) for r in rows if r["kind"] == kind]
        marker, colour = markers.get(kind, ("*", None))
        ax.scatter(*zip(*pts), marker=marker, color=colour, s=120 if marker == "*" else 40, label=kind, zorder=3)
    ax.axvline(target_ms, color="k", linestyle="--", linewidth=0.8, label=f"budget {target_ms:.2f} ms")
    measured = any(r["measured_ms"] for r in rows)
    ax.set_xlabel("latency, ms (" + ("measured here" if measured else "predicted by the table") + ")")
    ax.set_ylabel("top-1 on the test split")
    ax.set_title("searched vs random and uniform networks at one budget")
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def searched_from(paths: Sequence[str | Path], kind: str = "searched") -> list[tuple[str, str, Architecture]]:
    """(name, kind, architecture) of architecture files or search run folders (their ``arch.json``, in the
    space their ``config.json`` names: a space file of one's own works too)."""
    out = []
    for p in map(Path, paths):
        space = None
        if p.is_dir() and (p / "config.json").exists():
            space = load_space(read_json(p / "config.json", "search run config")["space"])
        arch_path = p / "arch.json" if p.is_dir() else p
        out.append((p.name if p.is_dir() else p.stem, kind, load_arch(arch_path, space)))
    return out


def compare_runs(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    cfg: CompareConfig,
    table_path: str | Path | None = None,
    target_ms: float | None = None,
    supernet: str | Path | None = None,
    say: Say = print,
) -> dict[str, Any]:
    """``tfnas compare``: search run folders or architecture files against random and uniform networks.

    The table defaults to the one the first search used (its ``arch.json`` names it), the supernet to the first
    path when it is a TF-NAS search run folder. The comparison folder is claimed like every run folder (a rerun
    continues it)."""
    searched = searched_from(paths)
    table_path = table_path or searched[0][2].meta.get("lut")
    if not table_path:
        raise ConfigError(f"{paths[0]}: its architecture names no latency table; pass --lut")
    if supernet is None and is_search_run(paths[0]):
        supernet = paths[0]
    claim_run_dir(out_dir, resume=True)
    return compare(searched, table_path, out_dir, cfg, target_ms, say=say, supernet=supernet)
