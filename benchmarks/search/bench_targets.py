"""Target precision: short searches for targets across the shipped CPU table's feasible range,
then the derived architectures' predicted and end-to-end measured latencies.

    python benchmarks/search/bench_targets.py --out benchmarks/search/results/targets.json

Searches are short (32 px proxy, generated data): the point is the latency
machinery (latency term, elastic scaling, final width adjustment, calibration),
not accuracy. Measured: ONNX Runtime, CPU, the table's batch and threads, via
``tfnas.latency.measure.measure_networks`` (interleaved rounds, as the calibration).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def recalibrate(cfg: dict, space, n: int, seed: int, work: Path) -> tuple[str, dict]:
    """Refit the table's calibration right before the searches (``tfnas.latency.calibrate``, the same fit
    as ``tfnas calibrate``) and write a copy of the table with it: separates the table's network-level
    model from the drift of a shared machine between calibration and measurement."""
    from tfnas.latency.table import open_table
    from tfnas.mbv2.calibrate import calibrate
    from tfnas.mbv2.keys import SpaceNeeds
    from tfnas.mbv2.search.build import resolve_path

    table = open_table(resolve_path(cfg["lut"]), SpaceNeeds(space))
    cal = calibrate(table, space, n, seed, progress=False)
    path = work / "recalibrated_lut.json"
    work.mkdir(parents=True, exist_ok=True)
    table.save(path)
    print("recalibrated:", json.dumps(cal))
    return str(path), cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "search" / "tfnas_cpu_demo.yaml"))
    ap.add_argument("--lut", default=None, help="table (default: the config's)")
    ap.add_argument("--fractions", default="0.15,0.35,0.55,0.75", help="targets as fractions of the feasible range")
    ap.add_argument("--targets", default=None, help="explicit targets in ms (overrides --fractions)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--measure-threads", type=int, default=None, help="default: the table's threads")
    ap.add_argument(
        "--rounds",
        type=int,
        default=11,
        help="measure every arch this many times, interleaved; report the median (the calibration's statistic)",
    )
    ap.add_argument(
        "--recalibrate",
        type=int,
        default=0,
        help="first refit the table's calibration on N random archs (widths on the table's alignment)",
    )
    ap.add_argument("--recalibrate-seed", type=int, default=1234)
    ap.add_argument(
        "--measure-final",
        action="store_true",
        help="close the loop: each search measures its derived net and re-aims (search.measure_final)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "search" / "results" / "targets.json"))
    ap.add_argument("--work", default="/tmp/tfnas_bench_targets")
    args = ap.parse_args()

    from tfnas.latency.measure import Runtime, TimingSettings, measure_networks
    from tfnas.mbv2.measure import networks
    from tfnas.mbv2.predict import predict
    from tfnas.mbv2.search.build import build_latency_model
    from tfnas.mbv2.search.config import load_config
    from tfnas.mbv2.search.searcher import TFNASSearch
    from tfnas.mbv2.space import load_space
    from tfnas_base.atomic import atomic_write_json

    base = load_config(args.config)
    if args.lut:
        base["lut"] = args.lut
    base["search"].update(epochs=args.epochs, warmup_epochs=args.warmup_epochs, steps_per_epoch=args.steps)
    base["runtime"]["progress"] = False
    base["search"]["measure_final"] = bool(args.measure_final)
    space = load_space(base["space"])
    recal = None
    if args.recalibrate:
        base["lut"], recal = recalibrate(base, space, args.recalibrate, args.recalibrate_seed, Path(args.work))
    lat = build_latency_model(base, space)
    fast, slow = lat.feasible_range()
    if args.targets:
        targets = [float(t) for t in args.targets.split(",")]
    else:
        targets = [round(fast + float(f) * (slow - fast), 2) for f in args.fractions.split(",")]
    fp = lat.lookup.table.fingerprint
    threads = args.measure_threads or int(fp["threads"])
    rows, archs = [], []
    for t in targets:
        cfg = json.loads(json.dumps(base))
        cfg["target_ms"] = t
        out = Path(args.work) / f"t{t:g}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        t0 = time.perf_counter()
        res = TFNASSearch(cfg, out).run()
        archs.append(res.arch)
        rows.append(
            {
                "target_ms": t,
                "predicted_ms": res.predicted_ms,
                "predicted_via_tfnas_predict_ms": predict(res.arch, lat.lookup, calibrated=lat.calibration is not None),
                "raw_sum_ms": predict(res.arch, lat.lookup, calibrated=False),
                "predicted_err_pct": 100 * (res.predicted_ms / t - 1),
                "search_seconds": time.perf_counter() - t0,
                "depths": res.arch.depths,
                "arch": str(out / "arch.json"),
                "measured_loop": json.loads(res.report_path.read_text()).get("measured_loop", []),
                "measured_rounds_ms": [],
            }
        )
    # a hand-made control (not searched): separates table/calibration error from search error
    from tfnas.mbv2.arch import Architecture

    control = Architecture.uniform(space, "k3_e6", lat.resolution)
    control_row = {
        "arch": "control: uniform k3_e6 (MobileNetV2-like), not searched",
        "predicted_ms": predict(control, lat.lookup, calibrated=lat.calibration is not None),
        "raw_sum_ms": predict(control, lat.lookup, calibrated=False),
        "measured_rounds_ms": [],
    }
    rows_and_control = [*rows, control_row]
    archs_and_control = [*archs, control]
    # interleaved rounds (as the calibration measures): a burst of load hits one round of every arch
    rt = Runtime("ort", threads, int(fp["batch"]))
    runs = measure_networks(networks(archs_and_control), rt, TimingSettings(rounds=args.rounds))
    for row, ms in zip(rows_and_control, runs):
        row["measured_rounds_ms"] = [m.latency_ms for m in ms]
    for row in rows:
        row["measured_ms"] = statistics.median(row["measured_rounds_ms"])
        row["measured_err_pct"] = 100 * (row["measured_ms"] / row["target_ms"] - 1)
        q = statistics.quantiles(row["measured_rounds_ms"], n=4)
        row["measured_iqr_pct"] = [100 * (q[0] / row["target_ms"] - 1), 100 * (q[2] / row["target_ms"] - 1)]
        print(json.dumps(row))
    control_row["measured_ms"] = statistics.median(control_row["measured_rounds_ms"])
    control_row["measured_vs_predicted_pct"] = 100 * (control_row["measured_ms"] / control_row["predicted_ms"] - 1)
    print(json.dumps(control_row))
    doc = {
        "lut": str(base["lut"]),
        "calibration": lat.calibration,
        "recalibration": recal,
        "feasible_range_ms": [fast, slow],
        "search": {
            "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs,
            "steps_per_epoch": args.steps,
            "proxy_resolution": base["data"]["resolution"],
            "data": base["data"]["source"],
        },
        "measure": {
            "backend": "ort",
            "threads": threads,
            "batch": int(fp["batch"]),
            "resolution": lat.resolution,
            "rounds": args.rounds,
            "statistic": "median over interleaved rounds of the protocol's median (as the calibration)",
        },
        "measure_final": bool(args.measure_final),
        "loadavg": os.getloadavg(),
        "rows": rows,
        "control": control_row,
    }
    atomic_write_json(args.out, doc)
    print(f"{'target':>8} {'predicted':>10} {'measured':>10} {'pred err':>9} {'meas err':>9}")
    for r in rows:
        print(
            f"{r['target_ms']:8.2f} {r['predicted_ms']:10.3f} {r['measured_ms']:10.3f}"
            f" {r['predicted_err_pct']:+8.2f}% {r['measured_err_pct']:+8.2f}%"
        )


if __name__ == "__main__":
    main()
