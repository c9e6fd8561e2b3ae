"""Search report: the derived architecture's numbers, the per-epoch history, and its plots.

``report.json`` holds predicted latency vs target, FLOPs, params and the history
(latency, temperature, op and depth distributions per epoch); three PNGs show
latency vs target over epochs, the op-probability heatmap per layer, and the
chosen depth per stage over epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_model
from tfnas.utils.flops import count_macs, count_params
from tfnas.utils.io import atomic_write_json, save_figure


def arch_cost(arch: Architecture, num_classes: int | None = None) -> dict[str, int]:
    """MACs and params of the derived network at its deployment resolution."""
    model = build_model(arch, num_classes)
    shape = (1, arch.space.in_channels, arch.resolution, arch.resolution)
    return {"macs": int(count_macs(model, shape)), "params": int(count_params(model))}


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
