"""The profiling bundle of an MBV2 space: every (op signature, width) of its sparse or dense width grid.

The graphs are written by the family-free ``tfnas.latency.bundle.write_graphs``; here is what an MBV2 space
asks of it: the signatures (``tfnas.mbv2.keys``) and the widths the grid measures of each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.latency.bundle import BundleGraph, write_graphs
from tfnas.latency.table import WidthGrid, make_grid
from tfnas.mbv2.keys import Signature, build_signature_module, space_signatures
from tfnas.mbv2.space import MBV2Space

WidthFilter = Callable[[Signature, int], bool]


def plan_bundle(
    space: MBV2Space,
    grid: WidthGrid,
    resolution: int | None = None,
    widths_filter: WidthFilter | None = None,
    keys: set[str] | None = None,
) -> list[tuple[Signature, int | None]]:
    """Every (signature, width) the bundle holds, fixed parts first."""
    plan: list[tuple[Signature, int | None]] = []
    for sig in space_signatures(space, resolution):
        if keys is not None and sig.key not in keys:
            continue
        if sig.width_range is None:
            plan.append((sig, None))
            continue
        for w in grid.widths(*sig.width_range):
            if widths_filter is None or widths_filter(sig, w):
                plan.append((sig, w))
    return plan


def write_bundle(
    space: MBV2Space,
    out_dir: str | Path,
    batch: int = 1,
    resolution: int | None = None,
    grid: str | WidthGrid = "sparse",
    widths_filter: WidthFilter | None = None,
    keys: set[str] | None = None,
    progress: bool = True,
    **grid_options: Any,
) -> Path:
    """Write (or complete) a bundle of ``space`` in ``out_dir`` and return its folder.

    ``grid``: "sparse" (both alignment classes, ~``intervals`` segments each) or
    "dense" (every width: for validating the sparse grid). ``widths_filter`` and
    ``keys`` restrict the bundle (benchmarks use them to sample signatures).
    """
    if batch < 1:
        raise ConfigError(f"batch = {batch}: expected an integer >= 1")
    res = resolution or space.resolution
    if space.final_size(res) < 1 or res < 8:
        raise ConfigError(f"resolution = {res}: too small for space {space.name!r}")
    g = grid if isinstance(grid, WidthGrid) else make_grid(grid, **grid_options)
    plan = plan_bundle(space, g, res, widths_filter, keys)
    graphs = [
        BundleGraph(sig.key, w, lambda sig=sig, w=w: build_signature_module(space, sig, w), sig.input_shape(batch))
        for sig, w in plan
    ]
    meta = {"grid": g.to_dict(), "space_source": space.source, "signatures": len({s.key for s, _ in plan})}
    return write_graphs(out_dir, graphs, space.name, batch, res, meta, progress)
