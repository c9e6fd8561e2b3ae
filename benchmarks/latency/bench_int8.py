"""INT8 vs fp32 on this machine: per-op ratios from the two tables, fresh interleaved timings of one block
per op type, and ORT's per-node profile of a block (which parts of an MBConv block quantization speeds up).

    python benchmarks/latency/bench_int8.py tables --fp32 LUT.json --int8 LUT-int8.json --out R.json
    python benchmarks/latency/bench_int8.py ops --bundle BUNDLE/ --rounds 5 --out R.json
    python benchmarks/latency/bench_int8.py nodes --bundle BUNDLE/ --out R.json
    python benchmarks/latency/bench_int8.py compare --a runs/fp32/arch.json --b runs/int8/arch.json \
        --fp32 LUT.json --int8 LUT-int8.json --out R.json
    python benchmarks/latency/bench_int8.py e2e --samples 8 --rounds 5 --aligns 4 16 --out R.json
    python benchmarks/latency/bench_int8.py widths --keys KEY [KEY ...] --step 4 --span 48 --out R.json

``tables`` needs no timing (medians over the tables' aligned widths); ``ops`` times the fp32 graph and
its quantized twin of each op type (one layer per stage, at the widest aligned width of the grid) in
the same interleaved rounds (median over rounds of each round's p10); ``nodes`` reads ORT's node
profile of each op type's block at both precisions and sums it by component (1x1 expand, depthwise,
activation, SE, 1x1 project, Q/DQ and layout). ``compare`` prints two searched networks side by side
with their per-layer latencies in both tables. ``e2e`` times whole networks (random ones, and uniform
ones at the width bound) exported and quantized as ``tfnas measure --precision int8`` does, at both
precisions in the same interleaved rounds. ``widths`` times one layer signature at every ``step``-th width of a
window, at both precisions in the same rounds, and sorts the widths into classes (multiple of 16, of 8, of 4,
other): which widths a runtime computes fast decides a table's width grid (``tfnas.latency.table.GRID_DEFAULTS``).
See the README next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from profilers.backends import get_backend
from profilers.bundle import load_manifest
from profilers.fingerprint import current_fingerprint
from profilers.quantize import default_settings, quantize_graph
from profilers.timing import TimingProtocol, measure
from profilers.weights import materialize
from tfnas_base.atomic import atomic_write_json

PROTOCOL = TimingProtocol(warmup=3, min_repeats=20, max_repeats=20, floor_repeats=5, max_time_s=0.5,
                          remeasure_attempts=0, statistic="p10")  # fmt: skip


def machine() -> dict:
    fp = current_fingerprint(1, precision="int8")
    return {
        "cpu": fp.get("cpu_model"),
        "isa": fp.get("cpu_isa"),
        "family_model": f"{fp.get('cpu_family')}/{fp.get('cpu_model_id')}",
        "onnxruntime": fp.get("runtime_version"),
        "quantization": default_settings().describe(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def op_of(key: str) -> str:
    """``ir|k3_e6_se|...`` -> ``k3_e6_se``; the fixed parts by their kind."""
    parts = key.split("|")
    return parts[1] if parts[0] == "ir" else parts[0]


def _entries(table: dict) -> dict:
    return table["entries"]


def bench_tables(args: argparse.Namespace) -> dict:
    """int8/fp32 per signature at the widths both tables hold that are multiples of 16 (fast at both
    precisions; an int8 search derives only those), grouped by op type."""
    fp32, int8 = json.loads(Path(args.fp32).read_text()), json.loads(Path(args.int8).read_text())
    by_op: dict[str, list[float]] = defaultdict(list)
    by_sig: dict[str, float] = {}
    for key, e in _entries(fp32).items():
        q = _entries(int8).get(key)
        if q is None:
            continue
        q_at = dict(zip(q["widths"], q["latency_ms"]))
        ratios = [
            q_at[w] / fi for w, fi in zip(e["widths"], e["latency_ms"]) if w in q_at and (w is None or w % 16 == 0)
        ]
        if ratios:
            by_sig[key] = statistics.median(ratios)
            by_op[op_of(key)] += ratios
    summary = {
        op: {"median": statistics.median(r), "p10": float(np.percentile(r, 10)), "p90": float(np.percentile(r, 90)),
             "points": len(r)}
        for op, r in sorted(by_op.items())
    }  # fmt: skip
    for op, s in summary.items():
        print(f"{op:10s} int8/fp32 median {s['median']:.2f} (p10 {s['p10']:.2f}, p90 {s['p90']:.2f}, {s['points']})")
    return {"fp32": args.fp32, "int8": args.int8, "by_op": summary, "by_signature": by_sig}


def _pick(manifest, per_op: int = 1) -> list:
    """One layer signature per (op type, stage resolution): its widest aligned width; plus stem, first, head."""
    best: dict[tuple[str, str], object] = {}
    for e in manifest.entries:
        parts = e.key.split("|")
        if parts[0] != "ir":
            best[(parts[0], "")] = e
            continue
        if parts[3] != "s1" or (e.width or 0) % 16:
            continue  # stride-1 layers (the repeated ones) at a block-aligned width
        slot = (parts[1], parts[4])
        if slot not in best or e.width > best[slot].width:  # type: ignore[attr-defined]
            best[slot] = e
    return list(best.values())


def _graphs(entries: list, workdir: Path) -> list[tuple[object, Path, Path]]:
    out = []
    settings = default_settings()
    for i, e in enumerate(entries):
        d = workdir / str(i)
        d.mkdir()
        g = materialize(e.path, d)
        q = quantize_graph(g, e.input_shape, d / "int8.onnx", settings)
        out.append((e, g, q))
    return out


def bench_ops(args: argparse.Namespace) -> dict:
    """fp32 and int8 graph of each picked signature, timed in the same interleaved rounds."""
    manifest = load_manifest(args.bundle)
    entries = _pick(manifest)
    fp32_be, int8_be = get_backend("ort", threads=1), get_backend("ort", threads=1, precision="int8")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        graphs = _graphs(entries, Path(tmp))
        timers = []
        for e, g, q in graphs:
            timers.append(fp32_be.prepare(g, e.input_shape))
            timers.append(int8_be.prepare(q, e.input_shape))
        runs: list[list[float]] = [[] for _ in timers]
        rng = random.Random(0)
        for _ in range(args.rounds):
            order = list(range(len(timers)))
            rng.shuffle(order)
            for i in order:
                runs[i].append(measure(timers[i], PROTOCOL).latency_ms)
        for k, (e, _, _) in enumerate(graphs):
            f, q = statistics.median(runs[2 * k]), statistics.median(runs[2 * k + 1])
            rows.append({"key": e.key, "width": e.width, "op": op_of(e.key), "fp32_ms": f, "int8_ms": q,
                         "ratio": q / f})  # fmt: skip
    rows.sort(key=lambda r: (r["op"], r["key"]))
    by_op = defaultdict(list)
    for r in rows:
        by_op[r["op"]].append(r["ratio"])
        print(f"{r['key']:45s} w={r['width']!s:5s} fp32 {r['fp32_ms']:.3f} int8 {r['int8_ms']:.3f} x{r['ratio']:.2f}")
    summary = {op: statistics.median(v) for op, v in sorted(by_op.items())}
    print("median int8/fp32 by op:", {k: round(v, 2) for k, v in summary.items()})
    return {"rounds": args.rounds, "protocol": PROTOCOL.to_dict(), "rows": rows, "by_op": summary}


COMPONENTS = ("expand_1x1", "depthwise", "project_1x1", "se", "activation", "residual", "quant_layout", "other")
CONV_OPS = ("Conv", "FusedConv", "QLinearConv")
LAYOUT_OPS = ("QuantizeLinear", "DequantizeLinear", "Transpose", "ReorderInput", "ReorderOutput")
ACTIVATION_OPS = ("Sigmoid", "QuickGelu", "Mul", "QLinearSigmoid", "QLinearMul", "Relu", "Clip")


def _component(name: str, op: str) -> str:
    """Which part of an MBConv block a node of ORT's profile is (by module path, then op type)."""
    if "/se/" in name:
        return "se"
    if op in CONV_OPS:
        for comp, part in (("expand_1x1", "/expand/"), ("depthwise", "/depthwise/"), ("project_1x1", "/project/")):
            if part in name:
                return comp
        return "project_1x1" if name.startswith("output") else "other"
    if op in LAYOUT_OPS:
        return "quant_layout"
    if op in ACTIVATION_OPS:
        return "activation"
    if op in ("Add", "QLinearAdd", "Sum"):
        return "residual"
    return "other"


def _node_profile(path: Path, shape, runs: int, workdir: Path) -> dict[str, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling, so.profile_file_prefix = True, str(workdir / path.stem)
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_node[(ev["name"][: -len("_kernel_time")], ev["args"].get("op_name", ""))].append(ev["dur"] / 1000.0)
    comps: dict[str, float] = defaultdict(float)
    for (node, op), durs in per_node.items():
        comps[_component(node, op)] += float(np.percentile(durs, 10))
    return dict(comps)


def bench_nodes(args: argparse.Namespace) -> dict:
    """ORT's per-node time of each picked block at both precisions, summed by component (p10 of the runs)."""
    manifest = load_manifest(args.bundle)
    entries = [e for e in _pick(manifest) if e.key.startswith("ir|")]
    if args.stage:
        entries = [e for e in entries if f"|{args.stage}|" in e.key]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-nodes-") as tmp:
        for e, g, q in _graphs(entries, Path(tmp)):
            f = _node_profile(g, e.input_shape, args.runs, Path(tmp))
            i = _node_profile(q, e.input_shape, args.runs, Path(tmp))
            rows.append({"key": e.key, "width": e.width, "op": op_of(e.key), "fp32_ms": f, "int8_ms": i})
            line = " ".join(f"{c} {f.get(c, 0):.3f}->{i.get(c, 0):.3f}" for c in COMPONENTS if f.get(c) or i.get(c))
            print(f"{e.key} w={e.width}: {line}")
    totals: dict[str, dict[str, float]] = {"fp32_ms": defaultdict(float), "int8_ms": defaultdict(float)}
    for r in rows:
        for p in ("fp32_ms", "int8_ms"):
            for c, v in r[p].items():
                totals[p][c] += v
    ratio = {c: totals["int8_ms"][c] / totals["fp32_ms"][c] for c in totals["fp32_ms"] if totals["fp32_ms"][c] > 0}
    print("int8/fp32 by component (summed over the blocks):", {k: round(v, 2) for k, v in ratio.items()})
    print("int8 Q/DQ + layout time:", round(totals["int8_ms"].get("quant_layout", 0.0), 3), "ms")
    return {"runs": args.runs, "rows": rows, "totals": {k: dict(v) for k, v in totals.items()}, "ratio": ratio}


def bench_compare(args: argparse.Namespace) -> dict:
    """Two searched architectures side by side: per layer op, width and latency in both tables."""
    from tfnas.latency.table import open_table
    from tfnas.mbv2.arch import load_arch
    from tfnas.mbv2.keys import SpaceNeeds
    from tfnas.mbv2.predict import predict, predict_breakdown

    out: dict = {}
    tables = {}
    for name in ("a", "b"):
        arch = load_arch(getattr(args, name))
        if not tables:
            tables = {p: open_table(getattr(args, p), SpaceNeeds(arch.space)) for p in ("fp32", "int8")}
        layers = []
        rows = {p: predict_breakdown(arch, t) for p, t in tables.items()}
        for (key, width, f_ms), (_, _, q_ms) in zip(rows["fp32"], rows["int8"]):
            layers.append({"key": key, "op": op_of(key), "width": width, "fp32_ms": f_ms, "int8_ms": q_ms})
        out[name] = {
            "arch": getattr(args, name),
            "layers": layers,
            "predicted_fp32_ms": predict(arch, tables["fp32"]),
            "predicted_int8_ms": predict(arch, tables["int8"]),
            "ops": [f"{c.op}/{c.width}" for _, c in arch.active_layers()],
            "depths": list(arch.depths),
        }
    for name in ("a", "b"):
        d = out[name]
        print(
            f"{name} {d['arch']}: predicted fp32 {d['predicted_fp32_ms']:.2f} ms, int8 {d['predicted_int8_ms']:.2f} ms"
        )
        print("   ", " ".join(d["ops"]))
    return out


def bench_e2e(args: argparse.Namespace) -> dict:
    """Whole networks at both precisions in the same interleaved rounds: where does int8 pay off here?"""
    from tfnas.latency.measure import (
        DEFAULT_PROTOCOL,
        Runtime,
        TimingSettings,
        interleave,
        prepare_timer,
        round_latency,
    )
    from tfnas.mbv2.arch import Architecture, load_arch
    from tfnas.mbv2.calibrate import sample_archs
    from tfnas.mbv2.measure import ArchNetwork
    from tfnas.mbv2.space import load_space

    space = load_space(args.space)
    archs, names, groups = [], [], []
    for align in args.aligns:  # the same draws, widths rounded down to each alignment
        archs += sample_archs(space, args.samples, args.seed, None, align)
        names += [f"random seed {args.seed} #{i} align {align}" for i in range(args.samples)]
        groups += [f"align {align}"] * args.samples
    names_random = len(archs)
    for path in args.archs:
        archs.append(load_arch(path))
        names.append(path)
    for op in args.uniform:
        archs.append(Architecture.uniform(space, op))
        names.append(f"uniform {op} (widths at the bound)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-e2e-") as tmp:
        timers = []
        for i, a in enumerate(archs):
            for p in ("fp32", "int8"):
                timers.append(prepare_timer(ArchNetwork(a), Runtime(precision=p), Path(tmp) / f"{i}{p}"))
        runs = interleave(timers, TimingSettings(args.rounds, args.seed, DEFAULT_PROTOCOL))
    for i, (a, name) in enumerate(zip(archs, names)):
        f, q = round_latency(runs[2 * i]), round_latency(runs[2 * i + 1])
        layers = [c for _, c in a.active_layers()]
        rows.append({"name": name, "group": groups[i] if i < names_random else name, "fp32_ms": f, "int8_ms": q,
                     "ratio": q / f,
                     "se_layers": sum("_se" in c.op for c in layers), "layers": len(layers),
                     "arch": a.to_dict()})  # fmt: skip
        print(
            f"{name[-40:]:40s} fp32 {f:7.3f} int8 {q:7.3f} x{q / f:.2f} (SE layers {rows[-1]['se_layers']}/{len(layers)})"
        )
    summary = {}
    for group in dict.fromkeys(groups):
        ratios = [r["ratio"] for r in rows[:names_random] if r["group"] == group]
        summary[group] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        print(f"random networks, widths {group}: int8/fp32", {k: round(v, 3) for k, v in summary[group].items()})
    return {"space": args.space, "rounds": args.rounds, "statistic": "median over rounds of each round's p10",
            "rows": rows, "random_summary": summary}  # fmt: skip


def width_class(width: int) -> str:
    return next((f"x{a}" for a in (16, 8, 4) if width % a == 0), "other")


def bench_widths(args: argparse.Namespace) -> dict:
    """Every ``step``-th width of a window of each signature, fp32 and int8 in the same interleaved rounds.

    Per width: its class and its latency relative to the straight line through the multiples of 16 beside it
    (1.0 = as fast as the fast class; fp32 pads a multiple of 4 to 16, so its 4-aligned widths sit at or above
    the line; a class well above the line is one a search should not pick)."""
    from tfnas.latency.bundle import export_graph
    from tfnas.latency.measure import TimingSettings, interleave, round_latency
    from tfnas.mbv2.keys import build_signature_module, space_signatures
    from tfnas.mbv2.space import load_space

    space = load_space(args.space)
    sigs = {s.key: s for s in space_signatures(space)}
    unknown = [k for k in args.keys if k not in sigs]
    if unknown:
        raise SystemExit(f"unknown signature(s) {unknown}; the space's keys are e.g. {list(sigs)[3:6]}")
    be = {"fp32": get_backend("ort", threads=1), "int8": get_backend("ort", threads=1, precision="int8")}
    points, timers = [], []
    with tempfile.TemporaryDirectory(prefix="bench-int8-widths-") as tmp:
        for key in args.keys:
            sig = sigs[key]
            lo, hi = sig.width_range  # type: ignore[misc]
            start = max(lo, ((lo + hi) // 2 - args.span // 2) // 16 * 16)
            for w in range(start, min(hi, start + args.span) + 1, args.step):
                path = Path(tmp) / f"{len(points)}.onnx"
                export_graph(build_signature_module(space, sig, w), path, sig.input_shape(1), strip=False)
                q = quantize_graph(path, sig.input_shape(1), Path(tmp) / f"{len(points)}-int8.onnx", default_settings())
                points.append((key, w))
                timers += [be["fp32"].prepare(path, sig.input_shape(1)), be["int8"].prepare(q, sig.input_shape(1))]
        runs = interleave([lambda p, fn=fn: measure(fn, p) for fn in timers], TimingSettings(args.rounds, 0, PROTOCOL))
    rows = [{"key": k, "width": w, "class": width_class(w), "fp32_ms": round_latency(runs[2 * i]),
             "int8_ms": round_latency(runs[2 * i + 1])} for i, (k, w) in enumerate(points)]  # fmt: skip
    classes: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key in args.keys:
        mine = [r for r in rows if r["key"] == key]
        fast = [r for r in mine if r["class"] == "x16"]
        for r in mine:
            below = [f for f in fast if f["width"] <= r["width"]]
            above = [f for f in fast if f["width"] >= r["width"]]
            if not below or not above:
                continue
            a, b = below[-1], above[0]
            t = 0.0 if a is b else (r["width"] - a["width"]) / (b["width"] - a["width"])
            for p in ("fp32", "int8"):
                line = a[f"{p}_ms"] + t * (b[f"{p}_ms"] - a[f"{p}_ms"])
                r[f"{p}_vs_x16_line"] = r[f"{p}_ms"] / line
                classes[p][r["class"]].append(r[f"{p}_ms"] / line)
        for r in mine:
            print(f"{key:42s} {r['width']:5d} {r['class']:5s} fp32 {r['fp32_ms']:.4f} int8 {r['int8_ms']:.4f}")
    summary = {p: {c: statistics.median(v) for c, v in sorted(cl.items())} for p, cl in classes.items()}
    print(
        "median latency / x16 line, by width class:",
        {p: {c: round(v, 3) for c, v in d.items()} for p, d in summary.items()},
    )
    return {"space": args.space, "rounds": args.rounds, "step": args.step, "span": args.span,
            "statistic": "median over rounds of each round's p10", "rows": rows, "by_class": summary}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tables")
    t.add_argument("--fp32", required=True)
    t.add_argument("--int8", required=True)
    o = sub.add_parser("ops")
    o.add_argument("--bundle", required=True)
    o.add_argument("--rounds", type=int, default=5)
    n = sub.add_parser("nodes")
    n.add_argument("--bundle", required=True)
    n.add_argument("--runs", type=int, default=30)
    n.add_argument("--stage", default=None, help="only blocks at this input size, e.g. 14x14")
    c = sub.add_parser("compare")
    for name in ("a", "b", "fp32", "int8"):
        c.add_argument(f"--{name}", required=True)
    e = sub.add_parser("e2e")
    e.add_argument("--space", default="tfnas_imagenet")
    e.add_argument("--samples", type=int, default=8)
    e.add_argument("--seed", type=int, default=3)
    e.add_argument("--rounds", type=int, default=5)
    e.add_argument("--uniform", nargs="*", default=["k3_e6", "k3_e6_se", "k5_e3"])
    e.add_argument("--archs", nargs="*", default=[], help="architecture files to time as well (searched nets)")
    e.add_argument("--aligns", nargs="+", type=int, default=[4], help="width alignments of the random networks")
    w = sub.add_parser("widths")
    w.add_argument("--space", default="tfnas_imagenet")
    w.add_argument("--keys", nargs="+", required=True, help="layer signatures (table keys)")
    w.add_argument("--step", type=int, default=4)
    w.add_argument("--span", type=int, default=48)
    w.add_argument("--rounds", type=int, default=7)
    for sp in (t, o, n, c, e, w):
        sp.add_argument("--out", required=True)
    args = p.parse_args(argv)
    fn = {"tables": bench_tables, "ops": bench_ops, "nodes": bench_nodes, "compare": bench_compare,
          "e2e": bench_e2e, "widths": bench_widths}[args.cmd]  # fmt: skip
    result = {"machine": machine(), "command": " ".join(sys.argv), **fn(args)}
    result["loadavg_at_end"] = list(os.getloadavg())
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
