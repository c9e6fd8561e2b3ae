"""Seconds of the derivation's width/structure fitting (``hit_target``) and of ``feasible_range``.

    python benchmarks/search/bench_hit_target.py

Starts from every layer at op 0, full depth and bound widths, and asks for a target
the widths alone cannot reach (1.9 ms on the shipped CPU table), so ``hit_target``
also has to make depth moves: the worst case of a derivation.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from tfnas.mbv2.search.build import build_latency_model
    from tfnas.mbv2.search.config import load_config
    from tfnas.mbv2.search.elastic import hit_target
    from tfnas.mbv2.space import load_space

    table = ROOT / "latency_tables" / "tfnas_imagenet-ort-cpu-avx512-1t-b1-224.json"  # timing needs none
    cfg = load_config(ROOT / "configs" / "search" / "tfnas_cpu_demo.yaml", {"lut": str(table)})
    lat = build_latency_model(cfg, load_space(cfg.space))
    n = len(lat.geometry)
    ops, widths = [0] * n, [lat.allowed_widths(i, 0)[-1] for i in range(n)]
    depths = [b - a for a, b in lat.stage_slices]
    t0 = time.perf_counter()
    *_, moves = hit_target(lat, ops, widths, depths, 1.9)
    t1 = time.perf_counter()
    lat.feasible_range()
    t2 = time.perf_counter()
    print(f"hit_target: {t1 - t0:.3f} s ({len(moves)} structural moves); feasible_range: {t2 - t1:.4f} s")


if __name__ == "__main__":
    main()
