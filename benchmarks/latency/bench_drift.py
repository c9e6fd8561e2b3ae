"""Do the measured figures hold under slow spells and load? (issue 24)

Subcommands (run each alone on the machine; every latency names the host it was measured on):

- ``spells``: what the slow spells are. After a torch training burst in this process, or after a whole
  search run in this process (``--search CONFIG``, the moment its closed loop would start), the same ONNX network is timed alternately here and in a spawned worker process, with the
  reference network beside it in each, for ``--seconds``. Says whether spells are host-wide (both
  processes slow at the same moments) or made by the process, and what the search process adds.
- ``spread``: ``--runs`` fresh-process ``tfnas measure`` runs of one network (quiet, or ``--load``: one
  CPU-bound process beside them): the spread of the raw and of the drift-cancelled figure.
- ``burst``: a competing process started for 5 s in the middle of a measurement: how far each figure
  moves from the quiet runs around it.
- ``demo``: ``--runs`` runs of a search config (``--load``: one CPU-bound process beside each search), then
  the derived network timed in quiet fresh processes: the closing figure against that timing, and the
  network against its budget.
- ``retime``: each net of a ``demo`` re-timed by ``spread`` (10 spaced fresh runs) and set against the
  closing figure and the budget again, beside the demo's own three-run truth (resumable).
- ``profile``: a space profiled quiet and with one competing process, both tables validated quietly on
  the same networks (with the reference recorded by each profile).

Results go to ``--out`` as JSON (and a short text summary printed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TFNAS = [sys.executable, "-m", "tfnas"]


def hog() -> subprocess.Popen:
    """One CPU-bound process (what the issue's load tests use)."""
    return subprocess.Popen([sys.executable, "-c", "while 1: pass"])


def run_logged(cmd: list[str], load: bool) -> tuple[str, float]:
    """Run ``cmd`` (with one CPU-bound process beside it when ``load``): its stdout and its wall seconds."""
    h = hog() if load else None
    t0 = time.perf_counter()
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout, time.perf_counter() - t0
    finally:
        if h:
            h.kill()


def host() -> dict:
    from profilers.device import describe_device
    from profilers.fingerprint import current_fingerprint

    return {
        "device": describe_device(current_fingerprint(1)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def tfnas_measure(arch: str, lut: str, rounds: int, out: Path) -> dict:
    cmd = [*TFNAS, "measure", arch, "--lut", lut, "--rounds", str(rounds), "--json", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def spread(values: list[float]) -> dict:
    med = statistics.median(values)
    return {
        "median": med,
        "range_pct": 100 * (max(values) - min(values)) / med,
        "stdev_pct": 100 * statistics.stdev(values) / med if len(values) > 1 else 0.0,
    }


# ---- spells: in-process vs a spawned process -----------------------------------------------------------------


def _worker(conn, onnx_path: str, shape: tuple, ref_dir: str) -> None:
    from profilers.backends import get_backend
    from profilers.reference import reference_timer
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL

    be = get_backend("ort", threads=1)
    net, ref = be.prepare(onnx_path, shape), reference_timer(be, ref_dir)
    while conn.recv():
        r = measure(ref, DEFAULT_PROTOCOL).latency_ms
        n = measure(net, DEFAULT_PROTOCOL).latency_ms
        conn.send((r, n))


def cmd_spells(args: argparse.Namespace) -> dict:
    import torch

    from profilers.backends import get_backend
    from profilers.reference import reference_timer
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL, export_network
    from tfnas.mbv2.arch import load_arch
    from tfnas.mbv2.measure import ArchNetwork
    from tfnas.mbv2.net import build_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.search:  # the real search process: its training, data loaders and last checkpoint, then time here
        from tfnas.mbv2.search.config import load_config
        from tfnas.mbv2.search.run import provide_table, run_search

        cfg = load_config(args.search, {"out": str(out / "search"), "search.measure_final": False})
        arch = run_search(
            provide_table(cfg, say=lambda *a: None), force=True, say=lambda *a: None, measure=False
        ).result.arch
    else:
        arch = load_arch(args.arch)
    onnx_path = export_network(ArchNetwork(arch), out / "net.onnx")
    shape = ArchNetwork(arch).input_shape(1)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker, args=(child, str(onnx_path), shape, str(out)))
    proc.start()
    be = get_backend("ort", threads=1)
    net, ref = be.prepare(onnx_path, shape), reference_timer(be, out)
    # what a search leaves behind: torch's intra-op threads have just trained a network
    torch.set_num_threads(args.torch_threads)
    model = build_model(arch).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t_train = time.perf_counter()
    while not args.search and time.perf_counter() - t_train < args.train_s:
        x = torch.randn(16, 3, 32, 32)
        loss = model(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rows, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        t = time.perf_counter() - t0
        r_in = measure(ref, DEFAULT_PROTOCOL).latency_ms
        n_in = measure(net, DEFAULT_PROTOCOL).latency_ms
        parent.send(True)
        r_out, n_out = parent.recv()
        rows.append({"t": round(t, 2), "ref_here": r_in, "net_here": n_in, "ref_spawned": r_out, "net_spawned": n_out})
    parent.send(False)
    proc.join()

    def q(key: str, p: float = 0.1) -> float:
        v = sorted(r[key] for r in rows)
        return v[int(p * (len(v) - 1))]

    base = {k: q(k) for k in ("ref_here", "net_here", "ref_spawned", "net_spawned")}
    slow = {k: [r[k] > 1.15 * base[k] for r in rows] for k in base}
    both = sum(a and b for a, b in zip(slow["net_here"], slow["net_spawned"]))
    only_here = sum(a and not b for a, b in zip(slow["net_here"], slow["net_spawned"]))
    only_spawned = sum(b and not a for a, b in zip(slow["net_here"], slow["net_spawned"]))
    ref_net = sum(a and b for a, b in zip(slow["net_here"], slow["ref_here"]))
    summary = {
        "pairs": len(rows),
        "p10_ms": base,
        "median_ms": {k: statistics.median(r[k] for r in rows) for k in base},
        "here_over_spawned_p10": base["net_here"] / base["net_spawned"],
        "here_over_spawned_median": statistics.median(r["net_here"] / r["net_spawned"] for r in rows),
        "here_over_spawned_median_by_third": [
            statistics.median(r["net_here"] / r["net_spawned"] for r in part)
            for part in (rows[: len(rows) // 3], rows[len(rows) // 3 : 2 * len(rows) // 3], rows[2 * len(rows) // 3 :])
        ],
        "slow_rounds(>1.15x p10)": {
            "net_here": sum(slow["net_here"]),
            "net_spawned": sum(slow["net_spawned"]),
            "both_at_once": both,
            "only_here": only_here,
            "only_spawned": only_spawned,
            "net_and_reference_here_at_once": ref_net,
            "reference_here": sum(slow["ref_here"]),
        },
        "ratio_spread_here": spread([r["net_here"] / r["ref_here"] for r in rows]),
        "raw_spread_here": spread([r["net_here"] for r in rows]),
    }
    return {
        "summary": summary, "rows": rows, "after": args.search or f"{args.train_s} s of torch training",
        "torch_threads": args.torch_threads,
    }  # fmt: skip


# ---- spread / burst: fresh-process `tfnas measure` ----------------------------------------------------------


def cmd_spread(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    h = hog() if args.load else None
    try:
        time.sleep(1.0 if h else 0.0)
        for i in range(args.runs):
            doc = tfnas_measure(args.arch, args.lut, args.rounds, out / f"m{i}.json")
            runs.append({k: doc[k] for k in ("raw_ms", "cancelled_ms", "uncertainty_ms", "clean", "latency_ms")})
            time.sleep(args.gap_s)
    finally:
        if h:
            h.kill()
    raw = spread([r["raw_ms"] for r in runs])
    canc = spread([r["cancelled_ms"] for r in runs if r["cancelled_ms"] is not None])
    return {"load": args.load, "runs": runs, "raw": raw, "cancelled": canc}


def cmd_burst(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quiet = [tfnas_measure(args.arch, args.lut, args.rounds, out / f"q{i}.json") for i in range(3)]
    hit = []
    for i in range(args.runs):
        proc = subprocess.Popen(
            [
                *TFNAS,
                "measure",
                args.arch,
                "--lut",
                args.lut,
                "--rounds",
                str(args.rounds),
                "--json",
                str(out / f"b{i}.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(args.delay_s)  # the measurement is under way
        h = hog()
        time.sleep(5.0)
        h.kill()
        proc.wait()
        hit.append(json.loads((out / f"b{i}.json").read_text()))
    quiet += [tfnas_measure(args.arch, args.lut, args.rounds, out / f"q{i + 3}.json") for i in range(3)]
    q_raw = statistics.median(d["raw_ms"] for d in quiet)
    q_canc = statistics.median(d["cancelled_ms"] for d in quiet)
    rows = [
        {
            "raw_ms": d["raw_ms"],
            "cancelled_ms": d["cancelled_ms"],
            "clean": d["clean"],
            "raw_change_pct": 100 * (d["raw_ms"] / q_raw - 1),
            "cancelled_change_pct": 100 * (d["cancelled_ms"] / q_canc - 1) if d["cancelled_ms"] else None,
            "unsteady_rounds": sum(not r["steady"] for r in d["rounds"]),
        }
        for d in hit
    ]
    return {"quiet_raw_ms": q_raw, "quiet_cancelled_ms": q_canc, "burst_runs": rows}


# ---- demo: a search config, then the derived net timed in quiet fresh processes ----------------------------


def cmd_demo(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(args.runs):
        run_dir = out / f"run{i}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        cmd = [*TFNAS, "search", "--config", args.config, "--out", str(run_dir), "--no-progress"]
        log, seconds = run_logged(cmd, args.load)
        measured = json.loads((run_dir / "measured.json").read_text())
        report = json.loads((run_dir / "report.json").read_text())
        lut = report["lut"]
        time.sleep(2.0)
        truth = [
            tfnas_measure(str(run_dir / "arch.json"), lut, args.rounds, run_dir / f"truth{j}.json")
            for j in range(3)
            if not time.sleep(2.0 * bool(j))
        ]
        truth_ms = min(t["raw_ms"] for t in truth)  # spells only add time: the lowest of 3 spaced fresh runs
        closing = measured["measured_ms"]
        target = measured["target_ms"]
        runs.append(
            {
                "seconds": round(seconds, 1),
                "target_ms": target,
                "closing_ms": closing,
                "closing_raw_ms": measured["raw_ms"],
                "closing_uncertainty_ms": measured["uncertainty_ms"],
                "truth_ms(quiet fresh processes, lowest of 3 runs' raw)": truth_ms,
                "truth_runs_raw_ms": [t["raw_ms"] for t in truth],
                "closing_vs_truth_pct": 100 * (closing / truth_ms - 1) if closing else None,
                "raw_closing_vs_truth_pct": 100 * (measured["raw_ms"] / truth_ms - 1),
                "net_vs_budget_pct": 100 * (truth_ms / target - 1),
                "loop": [
                    {k: r.get(k) for k in ("iteration", "predicted_ms", "measured_ms", "raw_ms", "uncertainty_ms")}
                    for r in report.get("measured_loop", [])
                    if "iteration" in r
                ],
                "log_tail": log.strip().splitlines()[-6:],
            }
        )
        print(json.dumps(runs[-1], indent=1), flush=True)
    return {"config": args.config, "load": args.load, "runs": runs}


def cmd_retime(args: argparse.Namespace) -> dict:
    """Each net of a ``demo`` run re-timed later by ``spread`` (``--runs`` spaced fresh ``tfnas measure`` runs),
    a firmer truth than the demo's three fresh runs taken right after each search: on these hosts a network's
    speed moves by several % over tens of minutes, and three runs a few seconds apart can all sit in one slow
    period. Resumable: a run whose ``retime/spread.json`` exists is read back, not re-timed."""
    demo_dir = Path(args.demo)
    found = [f for f in (demo_dir / "demo.json", demo_dir / "demo-load.json") if f.exists()]
    if not found:
        sys.exit(f"retime: {demo_dir} holds no demo.json or demo-load.json (a bench_drift.py demo --out folder)")
    demo = json.loads(found[0].read_text())
    rows = []
    for i, run in enumerate(demo["runs"]):
        run_dir = demo_dir / f"run{i}"
        done = run_dir / "retime" / "spread.json"
        if not done.exists():
            lut = json.loads((run_dir / "report.json").read_text())["lut"]
            sub = argparse.Namespace(
                arch=str(run_dir / "arch.json"), lut=lut, runs=args.runs, rounds=args.rounds, gap_s=args.gap_s,
                load=False, out=str(run_dir / "retime"),
            )  # fmt: skip
            done.write_text(json.dumps({"command": " ".join(sys.argv), "host": host(), **cmd_spread(sub)}, indent=1))
        sp = json.loads(done.read_text())
        raw = [r["raw_ms"] for r in sp["runs"]]
        canc = [r["cancelled_ms"] for r in sp["runs"] if r["cancelled_ms"] is not None]
        closing, target, quick = run["closing_ms"], run["target_ms"], statistics.median(run["truth_runs_raw_ms"])
        truths = {
            "demo_fresh_median_raw": quick,
            "retime_lowest_raw": min(raw),
            "retime_median_cancelled": statistics.median(canc),
        }
        rows.append(
            {
                "run": i, "closing_ms": closing, "target_ms": target, "truths_ms": truths,
                "retimed_at": sp["host"]["date"], "retime_spread": {"raw": sp["raw"], "cancelled": sp["cancelled"]},
                "closing_vs_truth_pct": {k: 100 * (closing / v - 1) if closing else None for k, v in truths.items()},
                "net_vs_budget_pct": {k: 100 * (v / target - 1) for k, v in truths.items()},
            }
        )  # fmt: skip
    return {"demo": str(demo_dir), "demo_command": demo.get("command"), "runs": rows}


# ---- profile: quiet vs one competing process ---------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for label in ("quiet", "load"):
        path = out / f"{label}.json"
        cmd = [*TFNAS, "profile", "--space", args.space, "--out", str(path), "--quiet", "--no-resume"]
        cmd += ["--work", str(out / "bundle")]
        t0 = time.perf_counter()
        log, _ = run_logged(cmd, label == "load")
        cal = [*TFNAS, "calibrate", "--lut", str(path), "--space", args.space, "--in-place"]
        log += subprocess.run(cal, check=True, capture_output=True, text=True).stdout
        tables[label] = {"seconds": round(time.perf_counter() - t0, 1), "log": log.strip().splitlines()[-4:]}
    for label in ("quiet", "load"):  # both validated quietly, on the same networks
        vj = out / f"{label}.validation.json"
        cmd = [*TFNAS, "validate", "--lut", str(out / f"{label}.json"), "--space", args.space, "--out", str(vj)]
        # exit 1 is a verdict ("does not hold"), not a failure: the report is written either way
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        v = json.loads(vj.read_text())
        t = json.loads((out / f"{label}.json").read_text())
        tables[label].update(
            mape=v["table"]["mape"],
            raw_mape=v.get("raw_table", {}).get("mape"),
            noise_floor=v["noise_floor"]["mape"],
            verdict=v["verdict"],
            noisy_points=t["meta"].get("noisy_points"),
            host_busy=t["meta"].get("host_busy"),
            reference=t.get("reference"),
        )
    tables["load_over_quiet_mape"] = tables["load"]["mape"] / tables["quiet"]["mape"]
    return tables


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("spells", "spread", "burst"):
        s = sub.add_parser(name)
        s.add_argument("--arch", required=name != "spells")
        s.add_argument("--lut", default=None)
        s.add_argument("--rounds", type=int, default=7)
        s.add_argument("--out", required=True)
    sub.choices["spells"].add_argument("--seconds", type=float, default=60)
    sub.choices["spells"].add_argument("--search", default=None, help="run this search config here first")
    sub.choices["spells"].add_argument("--train-s", type=float, default=10)
    sub.choices["spells"].add_argument("--torch-threads", type=int, default=2)
    sub.choices["spread"].add_argument("--runs", type=int, default=10)
    sub.choices["spread"].add_argument("--load", action="store_true")
    sub.choices["spread"].add_argument("--gap-s", type=float, default=1.0)
    sub.choices["burst"].add_argument("--runs", type=int, default=3)
    sub.choices["burst"].add_argument("--delay-s", type=float, default=3.0)
    d = sub.add_parser("demo")
    d.add_argument("--config", required=True)
    d.add_argument("--runs", type=int, default=3)
    d.add_argument("--load", action="store_true")
    d.add_argument("--rounds", type=int, default=9)
    d.add_argument("--out", required=True)
    r = sub.add_parser("retime")
    r.add_argument("--demo", required=True, help="a demo's --out folder")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--rounds", type=int, default=7)
    r.add_argument("--gap-s", type=float, default=1.0)
    r.add_argument("--out", required=True)
    f = sub.add_parser("profile")
    f.add_argument("--space", default="tfnas_cifar")
    f.add_argument("--out", required=True)
    args = p.parse_args()
    result = {"command": " ".join(sys.argv), "host": host(), **globals()[f"cmd_{args.cmd}"](args)}
    path = Path(args.out) / f"{args.cmd}{'-load' if getattr(args, 'load', False) else ''}.json"
    path.write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k not in ("rows", "runs")} if args.cmd != "demo" else result
    print(json.dumps(summary, indent=1)[:6000])
    print(f"-> {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
