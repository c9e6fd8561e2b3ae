"""Are searched-like networks predicted worse than random ones? Both populations timed in the same rounds.

Searched networks sit at an edge of the space (sink-connecting depth keeps the minimum of layers, elastic
widths sit at their bounds); calibration and validation sample uniformly. Timing both kinds interleaved in
one run separates a selection effect (the search favouring what the table under-predicts) from the host's
drift, which shifts both alike.

    python benchmarks/latency/bench_searched_vs_random.py --lut latency_tables/<table>.json \
        --out benchmarks/latency/results/searched_vs_random_<host>.json
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np

from profilers.lut import LatencyTable
from tfnas.latency.measure import Runtime, TimingSettings, measure_networks, protocol_for, round_latency
from tfnas.latency.table import Lookup, table_device
from tfnas.mbv2.arch import Architecture, LayerChoice
from tfnas.mbv2.calibrate import sample_archs
from tfnas.mbv2.measure import networks
from tfnas.mbv2.predict import predict
from tfnas.mbv2.space import MBV2Space, load_space
from tfnas_base.atomic import atomic_write_json


def searched_like(space: MBV2Space, n: int, seed: int, resolution: int, align: int = 4) -> list[Architecture]:
    """Mostly minimal depths and widths at their bounds (aligned), random ops."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = Architecture.random(space, rng, resolution)
        for g in space.layers(resolution):
            c = a.stages[g.stage][g.index]
            lo, hi = space.width_bounds(c.op, g.in_ch)
            w = hi if rng.random() < 0.7 else lo
            if w % align and w - w % align >= lo:
                w -= w % align
            a.stages[g.stage][g.index] = LayerChoice(c.op, w)
        a.depths = [space.min_depth(s) if rng.random() < 0.7 else d for s, d in enumerate(a.depths)]
        out.append(a.validate())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    table = LatencyTable.load(args.lut)
    space, res = load_space(table.space), int(table.fingerprint["resolution"])
    look = Lookup(table)
    groups = {
        "searched-like": searched_like(space, args.n, 5, res),
        "random aligned": sample_archs(space, args.n, 7, res, 4),
    }
    archs = [a for g in groups.values() for a in g]
    rt = Runtime("ort", int(table.fingerprint["threads"]), 1)
    runs = measure_networks(networks(archs), rt, TimingSettings(args.rounds, protocol=protocol_for(table.protocol)))
    measured = [round_latency(r) for r in runs]
    predicted = [predict(a, look) for a in archs]
    rows, i = {}, 0
    for name, g in groups.items():
        err = [(p / m - 1) * 100 for p, m in zip(predicted[i : i + len(g)], measured[i : i + len(g)])]
        rows[name] = {"bias": float(np.mean(err)), "mape": float(np.mean(np.abs(err))), "errors": err}
        print(f"{name:15s} bias {rows[name]['bias']:+.2f}%  MAPE {rows[name]['mape']:.2f}%")
        i += len(g)
    atomic_write_json(args.out, {"command": "python " + " ".join(sys.argv), "device": table_device(table), **rows})


if __name__ == "__main__":
    main()
