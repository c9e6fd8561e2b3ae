"""A search's parts from its config: the latency model, the datasets and the check of the target.

Shared by the search itself, ``inherit`` (which rebuilds a finished search's data) and ``compare``; each
fails with a ``ConfigError`` that says what to change before any training starts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tfnas.data import DataBundle, build_datasets, is_builtin_source
from tfnas.errors import ConfigError
from tfnas.latency.table import table_grid
from tfnas.mbv2.lut import open_space_table
from tfnas.mbv2.search.config import TfnasSearchConfig
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.space import MBV2Space
from tfnas.resources import shipped_file


def resolve_path(p: str | Path) -> Path:
    """Relative paths are tried from the working directory, then among the shipped files (``latency_tables/...``)."""
    path = Path(p).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return shipped_file(path) or path


def build_latency_model(cfg: TfnasSearchConfig, space: MBV2Space) -> LatencyModel:
    """The latency term of ``cfg``'s search: its table (of the config's precision), resolution and calibration."""
    if not cfg.lut:
        raise ConfigError("no latency table: set 'lut' in the search config (e.g. latency_tables/<table>.json)")
    # a named table must be of the config's precision, when it states one (an fp32 table is no int8 budget)
    table, _ = open_space_table(resolve_path(cfg.lut), space, resolution=cfg.lut_resolution, precision=cfg.precision)
    align = cfg.search.width_align or table_grid(table).align
    return LatencyModel(space, table, cfg.lut_resolution, cfg.calibrated, align)


def search_data(cfg: TfnasSearchConfig) -> DataBundle:
    """A search's datasets: its source, split and seed (``inherit`` rebuilds a finished search's the same way)."""
    d = cfg.data
    return build_datasets(
        d.source if is_builtin_source(d.source) else resolve_path(d.source),
        resolution=d.resolution,
        num_classes=d.num_classes,
        held_out_fraction=d.held_out_fraction,
        num_samples=d.num_samples,
        seed=cfg.seed,
        augment="train" if d.augment else "none",  # the architecture's split: never (the reference)
        max_samples=d.max_samples,
    )


def check_target(lat: LatencyModel, target_ms: float | None, op_mask: torch.Tensor | None = None) -> None:
    """Fail before any training when the target is missing or outside what the space can reach."""
    fast, slow = lat.feasible_range(op_mask)
    if target_ms is None:
        raise ConfigError(
            f"no latency target: pass --target-ms or set target_ms (feasible: {fast:.2f} .. {slow:.2f} ms)"
        )
    if not fast <= target_ms <= slow:
        raise ConfigError(
            f"target {target_ms:g} ms is infeasible for space {lat.space.name!r} with table"
            f" {lat.lookup.table.source}: the fastest architecture takes {fast:.2f} ms and the slowest"
            f" {slow:.2f} ms{' (calibrated)' if lat.calibration else ''}; choose a target in that range"
        )
