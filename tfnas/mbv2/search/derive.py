"""From the supernet's parameters to an architecture: each epoch's snapshot, its width scaling, the final
choice, and the report of it.

* ``epoch_snapshot``: the architecture the supernet favours now (argmax op per layer, its width, argmax sink
  per stage) and its latencies: what the search history records after every epoch.
* ``rescale_widths``: the epoch end's elastic step: the configured rule (``ELASTIC_RULES``) moves the favoured
  architecture's widths toward the target and the supernet keeps the channels the rule ranks highest.
* ``final_choice``: the favoured architecture moved onto the latency target (``hit_target``), widths first,
  ops or depths only where widths cannot get there, guided by the supernet's log-probabilities (``arch_prior``).
* ``held_out_accuracy``: how well the supernet (or the derived architecture's slice of it) classifies.
* ``search_report``, ``write_report``, ``plot_history``: the search's report of what it derived.
  ``report.json`` holds predicted latency vs target, MACs, params and the history (latency, temperature, op
  and depth distributions per epoch); three PNGs show latency vs target over epochs, the op-probability
  heatmap per layer, and the chosen depth per stage over epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_model
from tfnas.mbv2.search.elastic import ELASTIC_RULES, apply_widths, derive_choice, hit_target
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.steps import Autocast
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.utils.flops import count_macs, count_params
from tfnas.utils.io import save_figure
from tfnas_base.atomic import atomic_write_json

Choice = tuple[list[int], list[int], list[int]]  # (ops, widths, depths): one op index and width per layer
Prior = tuple[torch.Tensor, list[torch.Tensor], list[list[int]]]  # (op log-probs, sink log-probs, widths)


def epoch_snapshot(model: TFNASSupernet, lat: LatencyModel, op_table: torch.Tensor) -> tuple[Choice, dict[str, Any]]:
    """The favoured architecture and its history fields: expected (supernet) and derived latency, the op and
    sink probabilities, the depths and op names (``scaled_ms`` stays None until an elastic step fills it)."""
    ops, widths, depths = derive_choice(model)
    with torch.no_grad():
        expected = float(lat.expected(model.op_probs(), model.sink_probs(), op_table))
    derived = lat.arch_ms(ops, widths, depths)
    fields = {
        "expected_ms": expected,
        "derived_ms": derived,
        "scaled_ms": None,
        "op_probs": model.op_probs().tolist(),
        "sink_probs": [p.detach().tolist() for p in model.sink_probs()],
        "depths": depths,
        "ops": [model.op_names[o] for o in ops],
    }
    return (ops, widths, depths), fields


def rescale_widths(
    model: TFNASSupernet,
    lat: LatencyModel,
    choice: Choice,
    target_ms: float,
    rule: str,
    step: float,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[int, float]:
    """Scale the supernet's widths of the ops in ``choice`` by the elastic ``rule`` toward ``target_ms``:
    (how many layers changed width, the predicted latency of the rescaled choice). The kept channels carry
    their weights and ``optimizer`` state along, so training just continues."""
    ops, widths, depths = choice
    elastic = ELASTIC_RULES[rule]
    new = elastic.scale(lat, ops, widths, depths, target_ms, step)
    changed = apply_widths(model, ops, new, optimizer, elastic.keep_among)
    return changed, lat.arch_ms(ops, new, depths)


def chosen_widths(model: TFNASSupernet, ops: list[int]) -> list[int]:
    """The supernet's current width of each layer's op in ``ops``."""
    return [model.layers[i]._w[o] for i, o in enumerate(ops)]


@torch.no_grad()
def arch_prior(model: TFNASSupernet) -> Prior:
    """The supernet's preferences that guide moves onto the target: op and sink log-probabilities, widths."""
    op_logp = torch.log_softmax(model.masked_logits(), -1).cpu()
    sink_logp = [torch.log_softmax(b, 0).cpu() for b in model.betas]
    return op_logp, sink_logp, model.widths()


def final_choice(
    model: TFNASSupernet, lat: LatencyModel, target_ms: float, tolerance: float
) -> tuple[Choice, list[dict[str, Any]], Prior]:
    """The favoured architecture moved within ``tolerance`` of ``target_ms`` (predicted): (choice, the
    structural moves made, the prior that guided them)."""
    ops, widths, depths = derive_choice(model)
    prior = arch_prior(model)
    ops, widths, depths, moves = hit_target(lat, ops, widths, depths, target_ms, tolerance, *prior)
    return (ops, widths, depths), moves, prior


@torch.no_grad()
def held_out_accuracy(
    model: TFNASSupernet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    to: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    autocast: Autocast,
    arch: Choice | None = None,
) -> float:
    """Top-1 over ``batches`` (moved by ``to``) of the supernet's most probable path (sinks mixed), or of
    ``arch``'s slice of the supernet. BN uses batch statistics, as the search trains; the batches must mix
    classes (a class-sorted batch would normalise the signal away)."""
    ops = derive_choice(model)[0]
    correct = total = 0
    for x, y in batches:
        x, y = to(x, y)
        with autocast():
            out = model.forward_paths(x, ops) if arch is None else model.forward_arch(x, *arch)
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


# ---- the search report: report.json and its plots ----
def arch_cost(arch: Architecture, num_classes: int | None = None) -> dict[str, int]:
    """MACs and params of the derived network at its deployment resolution."""
    model = build_model(arch, num_classes)
    shape = (1, arch.space.in_channels, arch.resolution, arch.resolution)
    return {"macs": int(count_macs(model, shape)), "params": int(count_params(model))}


def search_report(
    arch: Architecture,
    lat: LatencyModel,
    choice: tuple[list[int], list[int], list[int]],
    moves: list[dict[str, Any]],
    loop: list[dict[str, Any]],
    history: list[dict[str, Any]],
    *,
    tolerance: float,
    lut: str,
    train_resolution: int,
    op_mask: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``report.json``'s content: the derived ``arch`` (its meta holds target, prediction and accuracies) against
    its target, the raw table sum of ``choice``, the moves onto the target, the measured loop, costs and history."""
    target, predicted, err = arch.meta["target_ms"], arch.meta["predicted_ms"], arch.meta["relative_error"]
    return {
        "target_ms": target,
        "predicted_ms": predicted,
        "relative_error": err,
        "target_hit": abs(err) <= tolerance + 1e-12,
        "supernet_held_out_acc": arch.meta.get("supernet_held_out_acc"),
        "derived_slice_held_out_acc": arch.meta.get("derived_slice_held_out_acc"),
        "chance_acc": arch.meta.get("chance_acc"),
        "raw_sum_ms": lat.arch_ms(*choice, calibrated=False),
        "structural_adjustments": moves,
        "measured_loop": loop,
        "calibration": lat.calibration,
        "lut": lut,
        "lut_resolution": lat.resolution,
        "train_resolution": train_resolution,
        "feasible_range_ms": list(lat.feasible_range(op_mask)),
        **arch_cost(arch),
        "arch": arch.to_dict(),
        "history": history,
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    return atomic_write_json(path, report)


def plot_history(
    out_dir: str | Path, history: list[dict[str, Any]], target_ms: float, op_names: list[str], stage_layers: list[int]
) -> list[Path]:
    """latency.png, op_probs.png, depths.png; returns the written paths (none without history)."""
    if not history:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("expected_ms", "expected (supernet)"),
        ("derived_ms", "derived, before scaling"),
        ("scaled_ms", "derived, after width scaling"),
    ):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax.plot(epochs, ys, marker="o", label=label)
    ax.axhline(target_ms, color="k", linestyle="--", label=f"target {target_ms:g} ms")
    ax.set_xlabel("epoch")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency vs target")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "latency.png")
    save_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    probs = history[-1]["op_probs"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(op_names), 1.0 + 0.3 * len(probs)))
    im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(max(r) for r in probs))
    ax.set_xticks(range(len(op_names)), op_names, rotation=45, ha="right")
    ax.set_yticks(range(len(probs)), [f"layer {i}" for i in range(len(probs))])
    ax.set_title(f"op probabilities (epoch {epochs[-1]})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    paths.append(out / "op_probs.png")
    save_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, n in enumerate(stage_layers):
        ax.plot(epochs, [h["depths"][s] for h in history], marker=".", label=f"stage {s + 1} (max {n})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("chosen depth (argmax sink)")
    ax.set_title("depth per stage")
    ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(out / "depths.png")
    save_figure(fig, paths[-1], dpi=100)
    plt.close(fig)
    return paths
