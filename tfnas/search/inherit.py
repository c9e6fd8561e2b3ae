"""What a network inherits from a TF-NAS search: its slice of the trained supernet, scored on the held-out split.

A supernet is useful for ranking only if the accuracy a network gets with the supernet's weights (its
*inherited* accuracy) orders networks as training each one on its own does. ``tfnas compare`` scores
every network both ways and reports the Kendall tau of the two orders, the measure the NAS evaluation
literature uses for this.

The supernet's BNs keep no running statistics (``bn: plain``), so a network is evaluated as the search
evaluates: no gradient, batch statistics, the search's batch size, batches drawn in a seeded shuffled
order of the search's own held-out split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from tfnas.arch import Architecture
from tfnas.data import DataBundle, build_datasets, evaluation_loader, is_builtin_source
from tfnas.errors import ConfigError, TfnasError
from tfnas.search.config import TfnasSearchConfig, resolve_config
from tfnas.search.searcher import resolve_path
from tfnas.search.supernet import TFNASSupernet
from tfnas.spaces.mbv2 import load_space
from tfnas.utils.checkpoint import load_checkpoint, load_state_checked
from tfnas.utils.io import read_json

Choice = tuple[list[int], list[int], list[int]]  # (op index per layer, width per layer, depth per stage)


def checkpoint_of(run_dir: str | Path) -> Path:
    """Where a search run folder keeps its supernet."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def is_search_run(path: str | Path) -> bool:
    """A TF-NAS search run folder that holds a supernet (not an architecture file, a training run's folder
    or a search that never checkpointed)."""
    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file() and checkpoint_of(p).is_file()):
        return False
    return isinstance(read_json(p / "config.json", "run config").get("search"), dict)


def search_data(cfg: TfnasSearchConfig) -> DataBundle:
    """The search's datasets, built exactly as ``TFNASSearch._build_data`` builds them (same split, same seed)."""
    d = cfg.data
    return build_datasets(
        d.source if is_builtin_source(d.source) else resolve_path(d.source),
        resolution=d.resolution,
        num_classes=d.num_classes,
        held_out_fraction=d.held_out_fraction,
        num_samples=d.num_samples,
        seed=cfg.seed,
        augment="train" if d.augment else "none",
        max_samples=d.max_samples,
    )


def load_supernet(
    run_dir: str | Path, device: str | torch.device | None = None
) -> tuple[TFNASSupernet, TfnasSearchConfig, DataBundle]:
    """The trained supernet of a TF-NAS search run folder, its config and its data.

    ``device``: None puts the supernet on the GPU when there is one. Errors name the missing file: an
    architecture file, or a folder the search never checkpointed in, has no supernet to inherit from.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(
            f"{run}: not a search run folder (an architecture file holds no supernet); inherited accuracy"
            " needs the folder of a TF-NAS search (its config.json and checkpoints/last.pt)"
        )
    cfg_path, ckpt = run / "config.json", checkpoint_of(run)
    if not cfg_path.is_file():
        raise ConfigError(f"{run}: no search config {cfg_path}; is it the folder of a TF-NAS search?")
    if not ckpt.is_file():
        raise TfnasError(f"{run}: no supernet checkpoint {ckpt}; the search never saved one (run or resume it)")
    cfg = resolve_config(read_json(cfg_path, "search run config"), str(cfg_path))
    data = search_data(cfg)
    if data.held_out is None:
        raise ConfigError(f"{cfg_path}: data.held_out_fraction is 0: the search has no held-out split")
    s = cfg.search
    model = TFNASSupernet(load_space(cfg.space), data.num_classes, s.ops, s.bn, s.op_weights, s.aligned_start)
    state = load_checkpoint(ckpt)
    if not isinstance(state.get("state"), dict) or "model" not in state["state"]:
        raise TfnasError(f"{ckpt}: holds no supernet weights ('state' -> 'model'); is it a search checkpoint?")
    load_state_checked(model, state["state"]["model"], ckpt)  # re-syncs the layers' widths
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # train mode, as the search evaluates: every BN on batch statistics (with bn: affine too)
    return model.to(dev).train(), cfg, data


def arch_choice(arch: Architecture) -> Choice:
    """(ops, widths, depths) of ``arch`` in the supernet's layer order: every layer, those past a stage's
    depth included (``forward_arch`` skips them)."""
    ops = list(arch.space.ops)
    layers = [c for stage in arch.stages for c in stage]
    return [ops.index(c.op) for c in layers], [c.width for c in layers], list(arch.depths)


@torch.no_grad()
def inherited_accuracy(
    model: TFNASSupernet, data_split: Dataset, arch: Architecture, batch_size: int, seed: int
) -> float:
    """Top-1 of ``arch``'s slice of ``model`` on ``data_split`` (batch statistics, shuffled batches)."""
    if arch.space.name != model.space.name or len(arch.depths) != len(model.stage_slices):
        raise ConfigError(f"architecture of space {arch.space.name!r}: the supernet is of {model.space.name!r}")
    choice = arch_choice(arch)
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in evaluation_loader(data_split, batch_size, seed=seed):
        out = model.forward_arch(x.to(device), *choice)
        correct += int((out.argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / max(total, 1)


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b of two scorings of the same items (ties in either count as neither concordant nor
    discordant, and shrink the normaliser); NaN when either scoring is constant or there are < 2 items."""
    if len(xs) != len(ys):
        raise ValueError(f"kendall_tau: {len(xs)} scores against {len(ys)}")

    def sign(v: float) -> int:
        return (v > 0) - (v < 0)

    pairs = [(sign(xs[i] - xs[j]), sign(ys[i] - ys[j])) for i in range(len(xs)) for j in range(i)]
    untied_x = sum(dx != 0 for dx, _ in pairs)
    untied_y = sum(dy != 0 for _, dy in pairs)
    if not untied_x or not untied_y:
        return math.nan
    return sum(dx * dy for dx, dy in pairs) / math.sqrt(untied_x * untied_y)
