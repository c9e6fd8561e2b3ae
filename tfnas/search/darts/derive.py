"""From architecture weights to a discrete genotype, and a picture of each cell.

Per intermediate node keep the two incoming edges whose strongest non-``none``
op weight is largest, and on each the argmax op excluding ``none`` (DARTS
rule). With edge normalisation (PC-DARTS) op weights are first scaled by the
edge weights. Multi-level supernets derive one cell per alpha set.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tfnas.search.darts.supernet import DartsSupernet
from tfnas.spaces.darts import NUM_INPUT_NODES, NUM_NODES, CellSpace, node_edge_slices
from tfnas.spaces.darts_genotypes import CellGenotype, Genotype


def derive_cell(weights: torch.Tensor, edge_ops: tuple[tuple[str, ...], ...], keep: int = 2) -> CellGenotype:
    """``weights``: ``[edges, ops]`` op weights of one cell type (already normalised)."""
    w = weights.detach().float().cpu()
    edges: list[tuple[str, int]] = []
    for sl in node_edge_slices():
        scored = []
        for src, e in enumerate(range(sl.start, sl.stop)):
            cands = [(float(w[e, k]), k) for k, op in enumerate(edge_ops[e]) if op != "none"]
            if not cands:
                continue
            best_w, best_k = max(cands)
            scored.append((best_w, src, edge_ops[e][best_k]))
        # sort by weight (desc), then by source index for a deterministic tie-break
        scored.sort(key=lambda t: (-t[0], t[1]))
        edges.extend((op, src) for _, src, op in scored[:keep])
    return CellGenotype(tuple(edges), tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES)))


def derive_from_weights(
    space: CellSpace,
    normal: torch.Tensor,
    reduce: torch.Tensor,
    edge_normal: torch.Tensor | None = None,
    edge_reduce: torch.Tensor | None = None,
    meta: dict | None = None,
) -> Genotype:
    """``normal``/``reduce``: ``[sets, edges, ops]``; edge weights ``[sets, edges]`` or None."""

    def cells(w: torch.Tensor, ew: torch.Tensor | None, cell_type: str) -> tuple[CellGenotype, ...]:
        out = []
        for s in range(w.shape[0]):
            ws = w[s] if ew is None else w[s] * ew[s].unsqueeze(-1)
            out.append(derive_cell(ws, space.ops(cell_type)))
        return tuple(out)

    return Genotype(cells(normal, edge_normal, "normal"), cells(reduce, edge_reduce, "reduce"), meta=dict(meta or {}))


@torch.no_grad()
def derive_genotype(model: DartsSupernet, meta: dict | None = None) -> Genotype:
    w = model.arch_weights()
    info = {"space": model.space.name, **(meta or {})}
    return derive_from_weights(model.space, w["normal"], w["reduce"], w.get("edge_normal"), w.get("edge_reduce"), info)


# ------------------------------------------------------------------ pictures
def _cell_dot(cell: CellGenotype, title: str):  # noqa: ANN202
    import graphviz

    g = graphviz.Digraph(name=title, format="png", graph_attr={"rankdir": "LR", "label": title})
    g.node("c_{k-2}", style="filled", fillcolor="darkseagreen2")
    g.node("c_{k-1}", style="filled", fillcolor="darkseagreen2")
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(cell.edges) // 2)]
    for i in range(len(cell.edges) // 2):
        g.node(str(i), style="filled", fillcolor="lightblue")
    g.node("c_{k}", style="filled", fillcolor="palegoldenrod")
    for k, (op, src) in enumerate(cell.edges):
        g.edge(names[src], names[NUM_INPUT_NODES + k // 2], label=op)
    for c in cell.concat:
        g.edge(names[c], "c_{k}")
    return g


def _cell_matplotlib(cell: CellGenotype, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cell.edges) // 2
    # zig-zag the intermediate nodes so that no edge passes through another node
    pos = {0: (0.0, 0.7), 1: (0.0, -0.7)}
    for i in range(n):
        pos[NUM_INPUT_NODES + i] = (1.0 + i, 1.2 if i % 2 == 0 else -1.2)
    out_pos = (n + 1.0, 0.0)
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{NUM_INPUT_NODES + i: str(i) for i in range(n)}}
    fig, ax = plt.subplots(figsize=(2.2 * (n + 2), 4.5))
    arrow = {"arrowstyle": "-|>", "color": "0.25", "shrinkA": 14, "shrinkB": 14, "connectionstyle": "arc3,rad=0.12"}
    for k, (op, src) in enumerate(cell.edges):
        (x0, y0), (x1, y1) = pos[src], pos[NUM_INPUT_NODES + k // 2]
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=arrow)
        ax.text(0.55 * x0 + 0.45 * x1, 0.55 * y0 + 0.45 * y1 + 0.1, op, fontsize=7, ha="center", color="navy")
    for c in cell.concat:
        ax.annotate("", out_pos, pos[c], arrowprops={**arrow, "color": "0.6", "ls": "--"})
    for node, (x, y) in pos.items():
        color = "#b4eeb4" if node < NUM_INPUT_NODES else "#add8e6"
        ax.text(x, y, labels[node], ha="center", va="center", bbox={"boxstyle": "round", "fc": color})
    ax.text(*out_pos, "c_{k}", ha="center", va="center", bbox={"boxstyle": "round", "fc": "#eee8aa"})
    ax.set_xlim(-0.5, n + 1.5)
    ax.set_ylim(-2.0, 2.0)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cell(cell: CellGenotype, path: str | Path, title: str = "cell") -> Path:
    """Write ``path`` (PNG). Uses graphviz when its Python package and ``dot`` work, else matplotlib."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        g = _cell_dot(cell, title)
        rendered = g.render(filename=path.with_suffix("").name, directory=str(path.parent), cleanup=True)
        return Path(rendered)
    except Exception:  # no graphviz package or no 'dot' binary: fall back
        return _cell_matplotlib(cell, title, path.with_suffix(".png"))


def plot_genotype(genotype: Genotype, out_dir: str | Path, prefix: str = "cell") -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    stages = ("low", "mid", "high")
    for i, cell in enumerate(genotype.normal):
        tag = f"normal_{stages[i]}" if len(genotype.normal) > 1 else "normal"
        paths.append(plot_cell(cell, out_dir / f"{prefix}_{tag}.png", tag))
    for i, cell in enumerate(genotype.reduce):
        tag = f"reduce_{i + 1}" if len(genotype.reduce) > 1 else "reduce"
        paths.append(plot_cell(cell, out_dir / f"{prefix}_{tag}.png", tag))
    return paths
