"""Where does a network's timing noise come from on this host? (issue 24, section 1 of its README part)

Subcommands (each times one network for a while, 1 thread, the project's timing protocol, and writes JSON):

- ``references``: the network and candidate reference networks interleaved in shuffled rounds: the fixed
  reference at 96, 160 and 224 px, the 96-px one run 8 times per timing, and networks of the network's own space
  (uniform k3_e3, uniform k5_e6_se, a random one). A reference cancels a slowdown only if the ratio
  network / reference varies less than the network.
- ``processes``: K spawned processes, each with its own session of the network, timed round-robin (the same
  moments): how much of the run-to-run spread is a per-process lottery.
- ``sessions``: K sessions of the network in this process, timed round-robin.
- ``blocks``: a ``references`` result read back at the scale of a measurement: the rounds cut into
  consecutive blocks of 1, 4, 8 and 16 (a measurement is 5-9 rounds), the stdev over blocks of each block's
  median, raw and as network / reference. What a reference must cancel is the drift between measurements, not
  the noise of one round.
- ``trace``: the reference network alone for a while, timed as a measurement times it, and what a record of
  ``--window`` seconds (a calibration's half minute) would have said of its time: each window's 20% quantile and
  median over the whole record's median. A table converts every figure with one such record.

    python benchmarks/latency/bench_noise_sources.py references --arch ARCH --seconds 120 --out OUT
    python benchmarks/latency/bench_noise_sources.py processes --arch ARCH --k 8 --rounds 15 --out OUT
    python benchmarks/latency/bench_noise_sources.py blocks --rows OUT/references.json --out OUT
    python benchmarks/latency/bench_noise_sources.py trace --seconds 300 --window 30 --out OUT
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path


def _stdev_pct(values: list[float]) -> float:
    return 100 * statistics.stdev(values) / statistics.median(values)


def _timer(arch, folder: Path, name: str):
    from profilers.backends import get_backend
    from tfnas.latency.measure import export_network
    from tfnas.mbv2.measure import ArchNetwork

    net = ArchNetwork(arch)
    return get_backend("ort", threads=1).prepare(export_network(net, folder / f"{name}.onnx"), net.input_shape(1))


def _reference(folder: Path, shape: tuple[int, ...], name: str):
    import onnx

    import profilers.reference as ref
    from profilers.backends import get_backend

    saved = ref.REFERENCE_SHAPE
    ref.REFERENCE_SHAPE = shape  # the same graph at another input size (only for this experiment)
    try:
        path = folder / f"{name}.onnx"
        onnx.save(ref.reference_model(), path)
    finally:
        ref.REFERENCE_SHAPE = saved
    return get_backend("ort", threads=1).prepare(path, shape)


def cmd_references(args: argparse.Namespace, out: Path) -> dict:
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL
    from tfnas.mbv2.arch import Architecture, load_arch

    arch = load_arch(args.arch)
    space = arch.space
    r96 = _reference(out, (1, 3, 96, 96), "ref96")

    def r96x8() -> None:
        for _ in range(8):
            r96()

    timers = {
        "net": _timer(arch, out, "net"),
        "ref96": r96,
        "ref160": _reference(out, (1, 3, 160, 160), "ref160"),
        "ref224": _reference(out, (1, 3, 224, 224), "ref224"),
        "ref96x8": r96x8,
        "uniform_k3_e3": _timer(Architecture.uniform(space, "k3_e3", arch.resolution), out, "u33"),
        "uniform_k5_e6_se": _timer(Architecture.uniform(space, "k5_e6_se", arch.resolution), out, "u56se"),
        "random": _timer(Architecture.random(space, random.Random(1), arch.resolution), out, "random"),
    }
    rows, rng, t0 = [], random.Random(0), time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        order = list(timers)
        rng.shuffle(order)
        rows.append({k: measure(timers[k], DEFAULT_PROTOCOL).latency_ms for k in order})
    summary = {
        "rounds": len(rows),
        "seconds": args.seconds,
        "median_ms": {k: statistics.median(r[k] for r in rows) for k in timers},
        "raw_stdev_pct": {k: _stdev_pct([r[k] for r in rows]) for k in timers},
        "net_over_reference_stdev_pct": {k: _stdev_pct([r["net"] / r[k] for r in rows]) for k in timers if k != "net"},
    }
    return {"summary": summary, "rows": rows}


def block_spread(rows: list[dict[str, float]], size: int) -> dict[str, float]:
    """Stdev (%) over consecutive blocks of ``size`` rounds of each block's median: the network raw, each
    reference raw, and network / each reference."""
    blocks = [rows[i : i + size] for i in range(0, len(rows) - size + 1, size)]
    refs = [k for k in rows[0] if k != "net"]
    out = {"blocks": len(blocks), "net_raw": _stdev_pct([statistics.median(r["net"] for r in b) for b in blocks])}
    for k in refs:
        out[f"{k}_raw"] = _stdev_pct([statistics.median(r[k] for r in b) for b in blocks])
        out[f"net_over_{k}"] = _stdev_pct([statistics.median(r["net"] / r[k] for r in b) for b in blocks])
    return out


def cmd_blocks(args: argparse.Namespace, out: Path) -> dict:
    source = json.loads(Path(args.rows).read_text())
    rows = source["rows"]
    summary = {"rows_from": args.rows, "rows_command": source.get("command"), "rows_date": source.get("date")}
    summary.update({f"block_{k}": block_spread(rows, k) for k in (1, 4, 8, 16)})
    return {"summary": summary}


def _worker(conn, path: str, shape: tuple[int, ...]) -> None:
    from profilers.backends import get_backend
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL

    session = get_backend("ort", threads=1).prepare(path, shape)
    while conn.recv():
        conn.send(measure(session, DEFAULT_PROTOCOL).latency_ms)


def _round_robin(timers: list, rounds: int) -> dict:
    rows: dict[int, list[float]] = {i: [] for i in range(len(timers))}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(range(len(timers)))
        rng.shuffle(order)
        for i in order:
            rows[i].append(timers[i]())
    medians = [statistics.median(v) for v in rows.values()]
    summary = {
        "medians_ms": sorted(medians),
        "between_stdev_pct": _stdev_pct(medians),
        "between_range_pct": 100 * (max(medians) - min(medians)) / statistics.median(medians),
        "within_round_stdev_pct": statistics.median(_stdev_pct(v) for v in rows.values()),
    }
    return {"summary": summary, "rows": rows}


def cmd_processes(args: argparse.Namespace, out: Path) -> dict:
    from tfnas.latency.measure import export_network
    from tfnas.mbv2.arch import load_arch
    from tfnas.mbv2.measure import ArchNetwork

    arch = load_arch(args.arch)
    path, shape = str(export_network(ArchNetwork(arch), out / "net.onnx")), ArchNetwork(arch).input_shape(1)
    ctx = mp.get_context("spawn")
    procs = []
    for _ in range(args.k):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, path, shape))
        proc.start()
        procs.append((parent, proc))

    def ask(conn):
        return lambda: (conn.send(True), conn.recv())[1]

    try:
        return _round_robin([ask(conn) for conn, _ in procs], args.rounds)
    finally:
        for conn, proc in procs:
            conn.send(False)
            proc.join()


def cmd_sessions(args: argparse.Namespace, out: Path) -> dict:
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL
    from tfnas.mbv2.arch import load_arch

    arch = load_arch(args.arch)
    sessions = [_timer(arch, out, "net") for _ in range(args.k)]
    return _round_robin([lambda s=s: measure(s, DEFAULT_PROTOCOL).latency_ms for s in sessions], args.rounds)


def _quantile(values: list[float], q: float) -> float:
    from profilers.drift import reference_baseline

    return reference_baseline(values, q)


def cmd_trace(args: argparse.Namespace, out: Path) -> dict:
    from profilers.reference import REFERENCE_SHAPE
    from profilers.timing import measure
    from tfnas.latency.measure import DEFAULT_PROTOCOL

    ref = _reference(out, REFERENCE_SHAPE, "reference")
    rows, t0 = [], time.perf_counter()
    while (t := time.perf_counter() - t0) < args.seconds:
        rows.append([round(t, 3), measure(ref, DEFAULT_PROTOCOL).latency_ms])
    whole = statistics.median(v for _, v in rows)
    windows = []
    for start in range(0, int(args.seconds - args.window) + 1, int(args.window)):
        vals = [v for t, v in rows if start <= t < start + args.window]
        if vals:
            windows.append({"start_s": start, "timings": len(vals), "q20_over_typical": _quantile(vals, 0.2) / whole,
                            "median_over_typical": statistics.median(vals) / whole})  # fmt: skip
    summary = {
        "timings": len(rows), "seconds": args.seconds, "window_s": args.window, "typical_ms(median of all)": whole,
        "quantiles_ms(10,20,50,80,90)": [_quantile([v for _, v in rows], q) for q in (0.1, 0.2, 0.5, 0.8, 0.9)],
        "window_q20_over_typical(min,max)": [min(w["q20_over_typical"] for w in windows),
                                             max(w["q20_over_typical"] for w in windows)],
        "window_median_over_typical(min,max)": [min(w["median_over_typical"] for w in windows),
                                                max(w["median_over_typical"] for w in windows)],
        "windows": windows,
    }  # fmt: skip
    return {"summary": summary, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("blocks").add_argument("--rows", required=True, help="a references.json")
    sub.choices["blocks"].add_argument("--out", required=True)
    trace = sub.add_parser("trace")
    trace.add_argument("--out", required=True)
    trace.add_argument("--seconds", type=float, default=300)
    trace.add_argument("--window", type=float, default=30, help="the length of the records compared (s)")
    for name in ("references", "processes", "sessions"):
        s = sub.add_parser(name)
        s.add_argument("--arch", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--seconds", type=float, default=120)
        s.add_argument("--k", type=int, default=8)
        s.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from profilers.device import describe_device
    from profilers.fingerprint import current_fingerprint

    result = {
        "command": " ".join(sys.argv),
        "host": describe_device(current_fingerprint(1)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **globals()[f"cmd_{args.cmd}"](args, out),
    }
    path = out / f"{args.cmd}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
