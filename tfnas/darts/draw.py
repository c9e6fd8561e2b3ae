"""Pictures of derived DARTS cells: graphviz when its package and ``dot`` work, else matplotlib."""

from __future__ import annotations

from pathlib import Path

from tfnas.darts.space import NUM_INPUT_NODES, PUBLISHED, CellGenotype, Genotype
from tfnas.utils.io import save_figure


def _cell_dot(cell: CellGenotype, title: str):
    import graphviz

    g = graphviz.Digraph(name=title, format="png", graph_attr={"rankdir": "LR", "label": title})
    g.node("c_{k-2}", style="filled", fillcolor="darkseagreen2")
    g.node("c_{k-1}", style="filled", fillcolor="darkseagreen2")
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(cell.num_nodes)]
    for i in range(cell.num_nodes):
        if cell.inputs_per_node[i]:
            g.node(str(i), style="filled", fillcolor="lightblue")
    g.node("c_{k}", style="filled", fillcolor="palegoldenrod")
    for (op, src), node in zip(cell.edges, cell.targets):
        g.edge(names[src], names[node], label=op)
    for c in cell.concat:
        g.edge(names[c], "c_{k}")
    return g


def _cell_matplotlib(cell: CellGenotype, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = cell.num_nodes
    # zig-zag the intermediate nodes so that no edge passes through another node
    pos = {0: (0.0, 0.7), 1: (0.0, -0.7)}
    for i in range(n):
        pos[NUM_INPUT_NODES + i] = (1.0 + i, 1.2 if i % 2 == 0 else -1.2)
    out_pos = (n + 1.0, 0.0)
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{NUM_INPUT_NODES + i: str(i) for i in range(n)}}
    for i, count in enumerate(cell.inputs_per_node):  # a node without inputs is absent from the cell
        if not count:
            pos.pop(NUM_INPUT_NODES + i)
    fig, ax = plt.subplots(figsize=(2.2 * (n + 2), 4.5))
    arrow = {"arrowstyle": "-|>", "color": "0.25", "shrinkA": 14, "shrinkB": 14, "connectionstyle": "arc3,rad=0.12"}
    for (op, src), node in zip(cell.edges, cell.targets):
        (x0, y0), (x1, y1) = pos[src], pos[node]
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
    save_figure(fig, path, dpi=110)
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


def plot_published(out_dir: str | Path) -> list[Path]:
    """Every published genotype's cells into ``out_dir``, each file prefixed with the genotype's name."""
    return [path for name, g in PUBLISHED.items() for path in plot_genotype(g, out_dir, prefix=name)]
