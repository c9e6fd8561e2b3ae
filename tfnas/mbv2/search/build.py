"""A search's parts from its config: the latency model, the datasets, the check of the target, and the data
order (which samples each step sees, on each process).

Shared by the search itself, ``inherit`` (which rebuilds a finished search's data) and ``compare``; each
fails with a ``ConfigError`` that says what to change before any training starts.

The order of an epoch's training batches depends only on (seed, epoch), and the held-out split is shuffled
once per pass over it, by (seed, pass): a resumed run reads exactly the batches the uninterrupted one would
have. With several processes each rank reads its own disjoint shard of every permutation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from tfnas.data import DataBundle, build_datasets, is_builtin_source, make_loader
from tfnas.errors import ConfigError
from tfnas.latency.table import table_grid
from tfnas.mbv2.keys import open_space_table
from tfnas.mbv2.search.config import TfnasSearch, TfnasSearchConfig
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.steps import SEED_MIX
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


# ---- the data order: step plan, batches per epoch and process ----
@dataclass(frozen=True)
class StepPlan:
    """How a search's data divides into steps, per process."""

    batch: int  # samples per process and step
    steps_per_epoch: int
    held_batches: int  # held-out batches per pass over the split
    total_steps: int


def plan_steps(search: TfnasSearch, train: Sized, held_out: Sized, world: int = 1) -> StepPlan:
    """The step plan of ``search`` on the splits ``train`` and ``held_out`` over ``world`` processes; a
    ``ConfigError`` when a split cannot fill one batch, the batch does not divide among the processes, or no
    architecture step would run."""
    batch = search.batch_size // world
    if batch < 1 or search.batch_size % world:
        raise ConfigError(f"search.batch_size {search.batch_size} must be a multiple of the {world} processes")
    full = (len(train) // world) // batch
    if full < 1:
        raise ConfigError(f"the training split has {len(train)} samples: less than one batch")
    steps_per_epoch = min(full, search.steps_per_epoch or full)
    if steps_per_epoch < search.arch_every and search.epochs > search.warmup_epochs:
        raise ConfigError(f"steps_per_epoch {steps_per_epoch} < arch_every {search.arch_every}: no arch steps")
    held_batches = (len(held_out) // world) // batch
    if held_batches < 1:
        raise ConfigError(f"the held-out split has {len(held_out)} samples: less than one batch")
    return StepPlan(batch, steps_per_epoch, held_batches, search.epochs * steps_per_epoch)


class _IndexSampler(Sampler[int]):
    """The given indices, in the given order (the loader itself never shuffles)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SearchBatches:
    """Training batches per epoch and held-out batches per architecture step, reproducible from the seed."""

    def __init__(
        self,
        train: Dataset[Any],
        held_out: Dataset[Any],
        plan: StepPlan,
        seed: int,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
    ):
        self.train, self.held_out = train, held_out
        self.batch, self.steps_per_epoch, self.held_batches = plan.batch, plan.steps_per_epoch, plan.held_batches
        self.seed, self.rank, self.world, self.workers = seed, rank, world, workers
        self._held_cycle: tuple[int, list[int]] = (-1, [])

    def order(self, n: int, key: int) -> list[int]:
        """This rank's share of the permutation of ``range(n)`` numbered ``key`` (2e: epoch e, 2c + 1: pass c)."""
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * SEED_MIX + key)).tolist()
        per = n // self.world
        return idx[self.rank * per : (self.rank + 1) * per]

    def train_loader(self, epoch: int, start: int = 0) -> DataLoader:
        """The training batches of ``epoch`` from its step ``start`` on (a resumed epoch skips what it ran)."""
        idx = self.order(len(self.train), 2 * epoch)[: self.steps_per_epoch * self.batch]
        return make_loader(
            self.train,
            self.batch,
            shuffle=False,
            seed=self.seed + epoch,
            workers=self.workers,
            sampler=_IndexSampler(idx[start * self.batch :]),
        )

    def held_indices(self, j: int) -> list[int]:
        """The held-out sample indices of architecture step ``j`` (counted over the whole run)."""
        cycle, b = divmod(j, self.held_batches)
        if self._held_cycle[0] != cycle:  # one shuffle of the held-out split per pass, not per arch step
            self._held_cycle = (cycle, self.order(len(self.held_out), 2 * cycle + 1))
        return self._held_cycle[1][b * self.batch : (b + 1) * self.batch]

    def held_batch(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Architecture step ``j``'s held-out batch (inputs, labels), on the CPU."""
        x, y = default_collate([self.held_out[i] for i in self.held_indices(j)])
        return x, y
