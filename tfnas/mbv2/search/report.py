"""Search report: the derived architecture's numbers, the per-epoch history, and its plots.

``report.json`` holds predicted latency vs target, FLOPs, params and the history
(latency, temperature, op and depth distributions per epoch); three PNGs show
latency vs target over epochs, the op-probability heatmap per layer, and the
chosen depth per stage over epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_model
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.utils.flops import count_macs, count_params
from tfnas.utils.io import save_figure
from tfnas_base.atomic import atomic_write_json


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
