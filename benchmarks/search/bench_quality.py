"""Search quality: does TF-NAS pick a better network than random ones of the same latency?

For each task (the generated ``shapes`` task, where the architecture matters, and scikit-learn's digits):
  1. search with the published defaults over several seeds, and the ablations (Gumbel-only sampling,
     the previous supernet, our grid elastic scaling) with the same protocol;
  2. ``tfnas.mbv2.search.compare``: draw the random architectures (seeded, before anything is trained) and
     the uniform baselines, bring all to the budget of the first search, time them here, train every
     network with one recipe, and rank each searched network among the random ones.
The search protocol below was fixed from the supernets' held-out accuracy alone (they must learn the
task), never from a comparison's outcome. Everything is resumable: rerun the same command to continue.

    python benchmarks/search/bench_quality.py --out benchmarks/search/results/quality      # ~105 min, 2 cores
    python benchmarks/search/bench_quality.py --quick --out /tmp/q                          # seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# The search protocol of the full run: the published TF-NAS defaults (plain BNs, optimisers rebuilt and the cosine
# stepped per epoch, bi-sampling, the official elastic rule) on a CPU budget: a 16 px proxy, 14 epochs of 30 steps
# (8 of them warm-up). Fixed from the supernets' learning alone (benchmarks/search/README.md), before any comparison.
SEARCH = {
    "space": "tfnas_cifar",
    "target_ms": 2.0,
    "data": {"resolution": 16, "num_samples": 4000, "held_out_fraction": 0.2},
    "search": {"epochs": 14, "warmup_epochs": 8, "batch_size": 32, "steps_per_epoch": 30},
    "optim": {"weights": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1.0e-5}},
    "runtime": {"progress": False},
}
# label -> (overrides of the protocol (dotted keys), seeds, tasks (None: all))
ABLATIONS = {
    "previous_supernet": ({"search.bn": "affine"}, [0], None),  # learnable BNs, residual ops from identity
    "gumbel_only": ({"search.sampling": "gumbel"}, [0], ["shapes:0.0"]),  # no second (random) path
    "grid_elastic": ({"search.elastic_rule": "grid"}, [0], ["shapes:0.0"]),  # our 10% grid steps
}
TRAIN = {  # every compared network of a task: the same recipe
    "resolution": 16,
    "num_samples": 4000,
    "batch_size": 64,
    "random": 10,
    "recipe": {
        "epochs": 4,
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4, "nesterov": True},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "label_smoothing": 0.0,
    },
}
# by task name (digits:0.5 too): 1,437 training digits, the same number of steps as ~4 epochs of 4,000 samples
TRAIN_EPOCHS = {"digits": 10}
TASKS = ("shapes:0.0", "digits")
# Added after the first full run: trained for 4 epochs, every network of shapes:0.0 reached 98.4-99.9% (a ceiling
# where 1,000 test images cannot rank them), so the same networks (same searches, same random draws) are also
# trained on a harder variant of the task, at which networks of the space differ (35-59% in an earlier probe).
HARDER = {"shapes:0.0": "shapes:0.3"}


# Issue 22: the weight-shared supernet (search.op_weights: shared, aligned start) on the same CPU search budget
# (14 epochs x 30 steps, 8 warm-up, lr 0.05, 16 px), on two tasks that do not saturate, on the AVX-512 CIFAR table
# at 1.45 ms (the same place in its feasible range, 0.52-5.86 ms, as 2.0 ms in the AVX2 table's 0.68-8.16 ms).
# Fixed before any result: 3 seeds, one seed per ablation (on digits only the published independent supernet: the
# session's time, decided before any digits search), 14 random networks (seed 1) so that >= 20 networks share the
# budget on shapes, no uniform baselines (cost), every network trained twice (recipe seeds 0 and 1).
SEARCH_22 = {
    **SEARCH,
    "target_ms": 1.45,
    "search": {**SEARCH["search"], "op_weights": "shared"},
}
ABLATIONS_22 = {
    "independent": ({"search.op_weights": "independent"}, [0], None),  # the published supernet
    "gumbel_only": ({"search.sampling": "gumbel"}, [0], ["shapes:0.3"]),  # shared, no second (random) path
    "unaligned": ({"search.aligned_start": False}, [0], ["shapes:0.3"]),  # shared weights, random start
}
TRAIN_22 = {**TRAIN, "random": 14, "uniform": []}
# digits:0.25, not 0.5: chosen before any digits search from one fixed network of the space (k3_e6 everywhere,
# bench_supernet_learning.py --path fixed, 300 steps): held-out top-1 29% at clutter 0.5 (as hard as the budget
# can learn at all) and 50% at 0.25 (the upsampled digits: 99%, at the ceiling).
TASKS_22 = ("shapes:0.3", "digits:0.25")
TRAIN_SEEDS_22 = (0, 1)
PROTOCOLS = {  # name -> (search, ablations, train, tasks, seeds, training seeds, table)
    "issue14": (SEARCH, ABLATIONS, TRAIN, TASKS, [0, 1, 2], (0,), "tfnas_cifar-ort-cpu-avx2-1t-b1-32.json"),
    "issue22": (SEARCH_22, ABLATIONS_22, TRAIN_22, TASKS_22, [0, 1, 2], TRAIN_SEEDS_22,
                "tfnas_cifar-ort-cpu-avx512-1t-b1-32.json"),
}  # fmt: skip


def quick_setup(out: Path) -> tuple[dict, dict, dict, tuple[str, ...], list[int]]:
    """A tiny space and a synthetic latency table: the whole pipeline in seconds (the test suite runs it)."""
    import yaml

    from profilers.lut import LatencyTable
    from tfnas.mbv2.keys import space_signatures
    from tfnas.mbv2.space import load_space

    out.mkdir(parents=True, exist_ok=True)
    tiny = yaml.safe_load((ROOT / "configs" / "spaces" / "tiny.yaml").read_text())
    space_file = out / "quick.yaml"  # the shipped tiny space at 16 px
    space_file.write_text(yaml.safe_dump({**tiny, "name": "quick", "input": {"resolution": 16, "channels": 3}}))
    space = load_space(space_file)
    entries = {}
    for sig in space_signatures(space):
        if sig.width_range is None:
            widths, lat = [None], [0.05]
        else:
            widths = list(range(sig.width_range[0], sig.width_range[1] + 1))
            lat = [0.01 + w * 1e-3 * space.ops[sig.op].kernel for w in widths]
        n = len(widths)
        entries[sig.key] = {"widths": widths, "latency_ms": lat, "spread_ms": [0.0] * n, "cv": [0.0] * n,
                            "noisy": [False] * n, "repeats": [1] * n}  # fmt: skip
    fp = {"cpu_model": "synthetic", "cpu_count": 1, "threads": 1, "runtime": "synthetic", "runtime_version": "0",
          "provider": "none", "batch": 1, "precision": "fp32", "platform": "quick", "python": "3", "resolution": 16}  # fmt: skip
    LatencyTable(space.name, fp, {}, entries, complete=True).save(out / "quick_lut.json")
    search = {
        "space": str(space_file),
        "lut": str(out / "quick_lut.json"),
        "target_ms": 0.5,
        "data": {"resolution": 8, "num_samples": 64, "held_out_fraction": 0.5},
        "search": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8, "steps_per_epoch": 2},
        "runtime": {"progress": False},
    }
    train = {"resolution": 8, "num_samples": 64, "batch_size": 16, "random": 2, "measure": False,
             "recipe": {"epochs": 1, "max_steps_per_epoch": 1}}  # fmt: skip
    return search, {"previous_supernet": ({"search.bn": "affine"}, [0], None)}, train, ("shapes:0.0",), [0]


def _search(cfg: dict, out: str, threads: int) -> dict:
    """One search in its own process (threads pinned); returns what the comparison needs."""
    import torch

    from tfnas.mbv2.search.config import resolve_config
    from tfnas.mbv2.search.run import provide_table, run_search

    torch.set_num_threads(threads)
    report = Path(out) / "report.json"
    if report.exists():  # done in an earlier (interrupted) run of the benchmark
        return json.loads(report.read_text())
    resume = (Path(out) / "checkpoints" / "last.pt").exists()
    t0 = time.perf_counter()
    cfg = provide_table(resolve_config(cfg), resume, say=lambda s: None)
    run_search(cfg, resume=resume, force=True, say=lambda s: None, measure=False)
    doc = json.loads(report.read_text())
    doc["search_seconds"] = round(time.perf_counter() - t0, 1)
    report.write_text(json.dumps(doc, indent=1))
    return doc


def _with(cfg: dict, overrides: dict) -> dict:
    from tfnas.config import apply_overrides

    return apply_overrides(copy.deepcopy(cfg), overrides)


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if args.quick:
        search, ablations, train, tasks, seeds = quick_setup(out)
        train_seeds = (0,)
    else:
        search, ablations, train, tasks, seeds, train_seeds, table = PROTOCOLS[args.protocol]
        search = {**search, "lut": args.lut or str(ROOT / "latency_tables" / table)}
    tasks = [t for t in tasks if not args.tasks or t in args.tasks.split(",")]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    summary_path = out / "summary.json"
    summary: dict = {"command": " ".join(sys.argv), "protocol": args.protocol, "search_protocol": search,
                     "ablations": ablations, "train": train, "train_seeds": list(train_seeds), "tasks": {}}  # fmt: skip
    if summary_path.exists():  # other tasks of an earlier invocation stay
        summary["tasks"] = json.loads(summary_path.read_text()).get("tasks", {})
    for task in tasks:
        tdir = out / task.replace(":", "_")
        runs = [(f"tfnas_s{s}", "searched", {"seed": s}) for s in seeds]
        runs += [(f"{label}_s{s}", label, {**o, "seed": s}) for label, (o, sds, tks) in ablations.items()
                 if tks is None or task in tks for s in sds]  # fmt: skip
        jobs = []
        for name, _, overrides in runs:
            sdir = str(tdir / "searches" / name)
            cfg = _with({**search, "name": name, "out": sdir, "data": {**search["data"], "source": task}}, overrides)
            jobs.append((cfg, sdir, threads))
        t0 = time.perf_counter()
        if args.jobs == 1:
            reports = [_search(*job) for job in jobs]
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
                reports = list(pool.map(_search, *zip(*jobs)))
        search_s = time.perf_counter() - t0
        if args.searches_only:
            continue
        from tfnas.mbv2.search.compare import CompareConfig, compare, searched_from

        search_dirs = [tdir / "searches" / name for name, _, _ in runs]
        searched = [(name, kind, a) for (name, kind, _), (_, _, a) in zip(runs, searched_from(search_dirs))]
        recipe = {**train["recipe"], "epochs": TRAIN_EPOCHS.get(task.split(":")[0], train["recipe"]["epochs"])}
        trainings = []
        for k, seed in enumerate(train_seeds):  # the same plan (draws: seed 1), trained with each recipe seed
            cfg = CompareConfig.model_validate({**train, "recipe": {**recipe, "seed": seed}, "data": task,
                                                "jobs": args.jobs, "seed": 1, "measure": k == 0 and train.get(
                                                    "measure", True)})  # fmt: skip
            t0 = time.perf_counter()
            cdir = tdir / ("compare" if k == 0 else f"compare_train_seed{seed}")
            result = compare(searched, search["lut"], cdir, cfg, target_ms=search["target_ms"],
                             supernet=search_dirs[0])  # fmt: skip
            trainings.append({"train_seed": seed, "compare_seconds": round(time.perf_counter() - t0, 1),
                              "networks": result["networks"], "random_median_acc": result["random_median_acc"]})  # fmt: skip
        held = {name: r["supernet_held_out_acc"] for (name, _, _), r in zip(runs, reports)}
        slices = {name: r.get("derived_slice_held_out_acc") for (name, _, _), r in zip(runs, reports)}
        summary["tasks"][task] = {
            "search_seconds": round(search_s, 1),
            "supernet_held_out_acc": held,
            "derived_slice_held_out_acc": slices,
            "chance_acc": reports[0]["chance_acc"],
            "random_median_acc": trainings[0]["random_median_acc"],
            "networks": trainings[0]["networks"],
            "trainings": trainings,
            "ranking": supernet_ranking(search_dirs, [n for n, _, _ in runs], trainings, tdir),
        }
        summary_path.write_text(json.dumps(summary, indent=1))
        if task in HARDER and args.protocol == "issue14" and not args.quick:
            hard = HARDER[task]
            cfg = CompareConfig.model_validate({**train, "recipe": recipe, "data": hard, "jobs": args.jobs, "seed": 1})
            t0 = time.perf_counter()
            result = compare(searched, search["lut"], tdir / f"compare_{hard.replace(':', '_')}", cfg,
                             target_ms=search["target_ms"])  # fmt: skip
            summary["tasks"][f"{task} searched, trained on {hard}"] = {
                **summary["tasks"][task],
                "compare_seconds": round(time.perf_counter() - t0, 1),
                "random_median_acc": result["random_median_acc"],
                "networks": result["networks"],
            }
            summary_path.write_text(json.dumps(summary, indent=1))
    if summary["tasks"]:
        print(markdown(summary))
    return summary


def supernet_ranking(search_dirs: list[Path], names: list[str], trainings: list[dict], tdir: Path) -> dict:
    """Per search: its supernet's inherited top-1 of every compared network (its held-out split) and the Kendall
    tau against their stand-alone top-1 (the mean over the training seeds)."""
    from tfnas.mbv2.arch import Architecture
    from tfnas.mbv2.search.inherit import inherited_accuracy, kendall_tau, load_supernet

    standalone: dict[str, list[float]] = {}
    for t in trainings:
        for r in t["networks"]:
            standalone.setdefault(r["name"], []).append(r["test_acc"])
    plan = json.loads((tdir / "compare" / "plan.json").read_text())
    out = {}
    for sdir, name in zip(search_dirs, names):
        cache = sdir / "inherited.json"
        if cache.exists():
            inherited = json.loads(cache.read_text())
        else:
            model, cfg, data = load_supernet(sdir)
            inherited = {
                p["name"]: inherited_accuracy(model, data.held_out, Architecture.from_dict(p["arch"], p["name"],
                                              model.space), cfg.search.batch_size, cfg.seed)
                for p in plan["networks"]
            }  # fmt: skip
            cache.write_text(json.dumps(inherited, indent=1))
        keys = sorted(inherited)
        mean = [statistics.mean(standalone[k]) for k in keys]
        tau = kendall_tau([inherited[k] for k in keys], mean)
        out[name] = {"kendall_tau": None if math.isnan(tau) else tau, "n": len(keys), "inherited": inherited}
    return out


def markdown_trained_twice(task: str, t: dict) -> list[str]:
    """Issue 22's table: both trainings of every network, the training noise, the rank among all random networks
    and among those of the same depth (+-1 active layer), the supernet's held-out and inherited top-1."""
    runs = {}
    for tr in t["trainings"]:
        for r in tr["networks"]:
            runs.setdefault(r["name"], dict(r, accs=[]))["accs"].append(r["test_acc"])
    for r in runs.values():
        r["mean"], r["depth"] = statistics.mean(r["accs"]), len(r["ops"])
    rnd = [r for r in runs.values() if r["kind"] == "random"]
    noise = statistics.median(max(r["accs"]) - min(r["accs"]) for r in runs.values()) if len(t["trainings"]) > 1 else 0
    lines = [f"**{task}** (chance {t['chance_acc']:.0%}; random median top-1, mean of {len(t['trainings'])} trainings:"
             f" {statistics.median(r['mean'] for r in rnd):.3f}; median gap between the two trainings of a network:"
             f" {noise:.3f})", "",
             "| network | kind | layers | supernet held-out | slice held-out | inherited (s0 supernet) | top-1 per"
             " training | mean | beats random | beats random of its depth | predicted ms | measured ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    inherited = t["ranking"].get("tfnas_s0", {}).get("inherited", {})
    for name, r in runs.items():
        held, sl = t["supernet_held_out_acc"].get(name), t["derived_slice_held_out_acc"].get(name)
        beats = same = ""
        if r["kind"] != "random":
            beats = f"{sum(x['mean'] < r['mean'] for x in rnd)}/{len(rnd)}"
            peers = [x for x in rnd if abs(x["depth"] - r["depth"]) <= 1]
            same = f"{sum(x['mean'] < r['mean'] for x in peers)}/{len(peers)}"
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {name} | {r['kind']} | {r['depth']} | {fmt(held)} | {fmt(sl)} | {fmt(inherited.get(name))} |"
                     f" {' / '.join(f'{a:.3f}' for a in r['accs'])} | {r['mean']:.3f} | {beats} | {same} |"
                     f" {r['predicted_ms']:.3f} | {fmt(r['measured_ms'])} |")  # fmt: skip
    lines += ["", "Supernet ranking (Kendall tau, inherited vs mean stand-alone top-1, over the networks above):", ""]
    for name, rk in t["ranking"].items():
        tau = "undefined" if rk["kendall_tau"] is None else f"{rk['kendall_tau']:+.2f}"
        lines.append(f"- {name}: tau {tau} over {rk['n']} networks")
    return lines + [""]


def markdown(summary: dict) -> str:
    """The README table: per task, each searched network's top-1 and rank beside the random median."""
    lines = []
    for task, t in summary["tasks"].items():
        if "trainings" in t:
            lines += markdown_trained_twice(task, t)
            continue
        lines += [f"**{task}** (chance {t['chance_acc']:.0%}; random median top-1 {t['random_median_acc']:.3f})", "",
                  "| network | kind | supernet held-out | top-1 | beats random | predicted ms | measured ms |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        n_random = sum(n["kind"] == "random" for n in t["networks"])
        for r in t["networks"]:
            held = t["supernet_held_out_acc"].get(r["name"])
            held = "" if held is None else f"{held:.3f}"
            beats = f"{r['random_beaten']}/{n_random}" if "random_beaten" in r else ""
            ms = "" if r["measured_ms"] is None else f"{r['measured_ms']:.3f}"
            lines.append(
                f"| {r['name']} | {r['kind']} | {held} | {r['test_acc']:.3f} | {beats} | {r['predicted_ms']:.3f} | {ms} |"
            )
        uni = [r["test_acc"] for r in t["networks"] if r["kind"] == "uniform"]
        lines += ["", f"uniform baselines: median top-1 {statistics.median(uni):.3f}" if uni else "", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="a tiny space and table: the pipeline in seconds")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="issue22")
    p.add_argument("--lut", default=None, help="latency table (default: the protocol's)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the protocol's tasks")
    p.add_argument("--searches-only", action="store_true", help="run the searches, compare later")
    p.add_argument("--jobs", type=int, default=2, help="searches / trainings at once (processes)")
    run(p.parse_args())


if __name__ == "__main__":
    main()
