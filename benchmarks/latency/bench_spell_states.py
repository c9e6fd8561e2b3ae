"""How much a slow state slows a searched network compared with the reference, from recorded closed loops.

Reads the ``measured_loop`` of every ``report.json`` under the given folders (search runs with
``measure_final: true``; each round holds the candidate's and the reference's timing). Per measurement the
reference's quiet level is its lowest round and the network's quiet time the median of the rounds whose
reference lies within 3% of it; every round is then binned by its reference over the quiet level, and the
network's slow-down is set against the reference's. A ratio network/reference of 1.0 in a bin means the
reference cancels that kind of slow state; the drift-cancelled figure is off by as much as it departs.

    python benchmarks/latency/bench_spell_states.py RUNS_DIR [RUNS_DIR ...] --json results/drift_spell_states.json

No timing runs here: it is free of the host's load, and reproducible from the run folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

BINS = ((0.0, 1.05), (1.05, 1.12), (1.12, 1.22), (1.22, 1.40), (1.40, 99.0))
QUIET_BAND = 1.03


def measurements(folders: list[Path]) -> list[dict]:
    """Each closed-loop measurement: its kind (precision, resolution) and (reference, network) per round."""
    out = []
    for folder in folders:
        for report in sorted(folder.rglob("report.json")):
            doc = json.loads(report.read_text())
            config = report.with_name("config.json")
            precision = json.loads(config.read_text()).get("precision") if config.exists() else None
            for row in doc.get("measured_loop", []):
                refs, values = row.get("reference_ms"), row.get("rounds_ms")
                if isinstance(refs, list) and isinstance(values, list) and refs:
                    measured = report.with_name("measured.json")
                    device = json.loads(measured.read_text()).get("device") if measured.exists() else None
                    out.append(
                        {
                            "run": str(report.parent),
                            "kind": f"{precision or 'fp32'} {doc.get('lut_resolution')}px",
                            "rounds": list(zip(refs, values)),
                            "device": device,
                        }
                    )
    return out


def binned(meas: list[dict]) -> dict:
    """Per kind (precision, resolution) and bin: rounds, the reference's and the network's median slow-down,
    and their ratio."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    used: dict = defaultdict(int)
    for m in meas:
        quiet_ref = min(r for r, _ in m["rounds"])
        quiet = [v for r, v in m["rounds"] if r <= QUIET_BAND * quiet_ref]
        if len(quiet) < 2:
            continue  # no quiet time of the network to compare with
        used[m["kind"]] += 1
        quiet_net = statistics.median(quiet)
        for r, v in m["rounds"]:
            x = r / quiet_ref
            lo, hi = next(b for b in BINS if b[0] <= x < b[1])
            acc[m["kind"]][f"{lo:.2f}-{hi:.2f}"].append((x, v / quiet_net))
    doc = {}
    for kind, bins in acc.items():
        rows = {}
        for name, xs in sorted(bins.items()):
            ratios = sorted(n / r for r, n in xs)
            rows[name] = {
                "rounds": len(xs),
                "reference_x": statistics.median(r for r, _ in xs),
                "network_x": statistics.median(n for _, n in xs),
                "network_over_reference": statistics.median(ratios),
                "p10": ratios[len(ratios) // 10],
                "p90": ratios[9 * len(ratios) // 10],
            }
        doc[kind] = {"measurements": used[kind], "bins": rows}
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders holding search runs (searched recursively)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    meas = measurements(args.folders)
    doc = binned(meas)
    for kind, part in doc.items():
        print(f"{kind}: {part['measurements']} measurements with >= 2 quiet rounds")
        for name, row in part["bins"].items():
            print(
                f"  reference {name}x: {row['rounds']:4d} rounds, reference {row['reference_x']:.3f}x, network"
                f" {row['network_x']:.3f}x, network/reference {row['network_over_reference']:.3f}"
                f" (p10 {row['p10']:.3f}, p90 {row['p90']:.3f})"
            )
    if args.json:
        command = "python benchmarks/latency/bench_spell_states.py " + " ".join(map(str, args.folders))
        devices = sorted({str(m["device"]) for m in meas if m["device"]})  # the hosts the rounds were timed on
        args.json.write_text(json.dumps({"command": command, "devices": devices, "results": doc}, indent=1) + "\n")


if __name__ == "__main__":
    main()
