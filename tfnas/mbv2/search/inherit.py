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

from tfnas.data import DataBundle, evaluation_loader
from tfnas.errors import ConfigError, TfnasError
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import MBV2Net, build_model
from tfnas.mbv2.search.build import search_data
from tfnas.mbv2.search.config import TfnasSearchConfig, resolve_config
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.mbv2.space import load_space
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


def check_same_space(model: TFNASSupernet, arch: Architecture) -> None:
    if arch.space.name != model.space.name or len(arch.depths) != len(model.stage_slices):
        raise ConfigError(f"architecture of space {arch.space.name!r}: the supernet is of {model.space.name!r}")


@torch.no_grad()
def inherited_accuracy(
    model: TFNASSupernet, data_split: Dataset, arch: Architecture, batch_size: int, seed: int
) -> float:
    """Top-1 of ``arch``'s slice of ``model`` on ``data_split`` (batch statistics, shuffled batches)."""
    check_same_space(model, arch)
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


@torch.no_grad()
def slice_network(model: TFNASSupernet, arch: Architecture, num_classes: int | None = None) -> MBV2Net:
    """The derived network of ``arch`` starting from its slice of the supernet (``tfnas train --init-from``).

    Every searched layer takes its op's view of the supernet's weights (a channel prefix of the op's tensors,
    the kernel's centre with shared weights); stem, first block and head take the supernet's. BNs the supernet
    runs on batch statistics without parameters (``bn: plain``) start as a fresh BN: the identity affine, the
    same function in training mode. ``num_classes`` must be the search's: the classifier is inherited too.
    """
    check_same_space(model, arch)
    net = build_model(arch, num_classes or model.head.classifier.out_features)
    if net.head.classifier.out_features != model.head.classifier.out_features:
        raise ConfigError(
            f"a supernet of {model.head.classifier.out_features} classes cannot start a network of"
            f" {net.head.classifier.out_features}: train on the search's classes, or without --init-from"
        )
    for part in ("stem", "first_block", "head"):
        unexpected = getattr(net, part).load_state_dict(getattr(model, part).state_dict(), strict=False).unexpected_keys
        if unexpected:
            raise TfnasError(f"supernet {part} does not match the derived network's: {unexpected}")
    ops, widths, _ = arch_choice(arch)
    active = [i for s, (a, _) in enumerate(model.stage_slices) for i in range(a, a + arch.depths[s])]
    for block, i in zip(net.blocks, active):
        _copy_view(block, model.layers[i].views(ops[i]), widths[i])
    return net


def _copy_view(block: torch.nn.Module, view: dict[str, torch.Tensor], w: int) -> None:
    """One derived ``InvertedResidual`` set to a candidate's view at mid width ``w``."""
    targets = {
        "expand": (block.expand[0].weight, view["expand"][:w]),
        "dw": (block.depthwise[0].weight, view["dw"][:w]),
        "project": (block.project[0].weight, view["project"][:, :w]),
    }
    if "se_reduce" in view:
        se = block.se
        targets.update(se_reduce=(se.reduce.weight, view["se_reduce"][:, :w]), se_reduce_b=(se.reduce.bias,
                       view["se_reduce_b"]), se_expand=(se.expand.weight, view["se_expand"][:w]),
                       se_expand_b=(se.expand.bias, view["se_expand_b"][:w]))  # fmt: skip
    for name, bn in (("bn1", block.expand[1]), ("bn2", block.depthwise[1]), ("bn3", block.project[1])):
        if f"{name}_w" in view:  # bn: affine
            n = bn.weight.numel()
            targets[name + "_w"], targets[name + "_b"] = (
                (bn.weight, view[f"{name}_w"][:n]),
                (bn.bias, view[f"{name}_b"][:n]),
            )
    for name, (dst, src) in targets.items():
        if dst.shape != src.shape:
            raise TfnasError(
                f"supernet view {name} {tuple(src.shape)} does not fit the derived layer's {tuple(dst.shape)}"
            )
        dst.copy_(src)
