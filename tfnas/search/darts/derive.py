"""From architecture weights to a discrete genotype, and a picture of each cell.

Derivation rules (``DERIVE_RULES``), as in the official code of each method:

* ``top2`` (DARTS): per intermediate node keep the two incoming edges whose
  strongest non-``none`` op weight is largest, and on each the argmax op
  excluding ``none``. Ties go to the earlier op and the earlier edge.
* ``threshold`` (Fair DARTS's ``threshold_sparse``): preselect the same two
  edges, then keep an edge only if its best op weight (a sigmoid) is at least
  ``threshold`` (0.85); a node may end with 0, 1 or 2 inputs. A node without
  inputs is absent, and so are edges that would read from it. A cell left with
  no edge at all keeps its strongest edge from a cell input (the official code
  would build an empty cell and fail; this is our choice).

With edge normalisation (PC-DARTS) op weights are first scaled by the edge
weights. Multi-level supernets derive one cell per alpha set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tfnas.errors import ConfigError
from tfnas.search.darts.supernet import DartsSupernet
from tfnas.spaces.darts import NUM_INPUT_NODES, NUM_NODES, CellSpace, node_edge_slices
from tfnas.spaces.darts_genotypes import CellGenotype, Genotype
from tfnas.utils.io import save_figure

EdgeOps = tuple[tuple[str, ...], ...]
DeriveRule = Callable[..., CellGenotype]
DERIVE_RULES: dict[str, DeriveRule] = {}


def register_rule(name: str) -> Callable[[DeriveRule], DeriveRule]:
    def deco(fn: DeriveRule) -> DeriveRule:
        DERIVE_RULES[name] = fn
        return fn

    return deco


def _best_op(w: torch.Tensor, ops: tuple[str, ...]) -> tuple[float, int] | None:
    """(weight, index) of the strongest non-``none`` op; the first one on ties."""
    best = None
    for k, op in enumerate(ops):
        if op != "none" and (best is None or float(w[k]) > best[0]):
            best = (float(w[k]), k)
    return best


def _strongest_edges(w: torch.Tensor, edge_ops: EdgeOps, sl: slice, keep: int) -> list[tuple[float, int, str]]:
    """(weight, source, op) of a node's ``keep`` strongest edges, strongest first (earlier source on ties)."""
    scored = []
    for src, e in enumerate(range(sl.start, sl.stop)):
        best = _best_op(w[e], edge_ops[e])
        if best is not None:
            scored.append((best[0], src, edge_ops[e][best[1]]))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored[:keep]


@register_rule("top2")
def derive_cell(weights: torch.Tensor, edge_ops: EdgeOps, keep: int = 2) -> CellGenotype:
    """``weights``: ``[edges, ops]`` op weights of one cell type (already normalised)."""
    w = weights.detach().float().cpu()
    edges: list[tuple[str, int]] = []
    for sl in node_edge_slices():
        edges.extend((op, src) for _, src, op in _strongest_edges(w, edge_ops, sl, keep))
    return CellGenotype(tuple(edges), tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES)))


@register_rule("threshold")
def derive_cell_threshold(
    weights: torch.Tensor, edge_ops: EdgeOps, threshold: float = 0.85, keep: int = 2
) -> CellGenotype:
    """Fair DARTS: of each node's ``keep`` strongest edges, those whose best op weight is >= ``threshold``."""
    w = weights.detach().float().cpu()
    per_node = [
        [(op, src) for wt, src, op in _strongest_edges(w, edge_ops, sl, keep) if wt >= threshold]
        for sl in node_edge_slices()
    ]
    # a node without inputs is absent: drop the edges reading from it (repeat, as that may empty another node)
    changed = True
    while changed:
        empty = {NUM_INPUT_NODES + i for i, ins in enumerate(per_node) if not ins}
        pruned = [[(op, src) for op, src in ins if src not in empty] for ins in per_node]
        changed, per_node = pruned != per_node, pruned
    if not any(per_node):  # nothing left: keep the cell's strongest edge from a cell input, not an empty cell
        best = max(
            ((wt, -n, -src, op) for n, sl in enumerate(node_edge_slices())
             for wt, src, op in _strongest_edges(w, edge_ops, sl, NUM_INPUT_NODES + n) if src < NUM_INPUT_NODES),
        )  # fmt: skip
        per_node[-best[1]] = [(best[3], -best[2])]
    edges = tuple(e for ins in per_node for e in ins)
    concat = tuple(NUM_INPUT_NODES + i for i, ins in enumerate(per_node) if ins)
    return CellGenotype(edges, concat, tuple(len(ins) for ins in per_node))


def get_rule(name: str) -> DeriveRule:
    if name not in DERIVE_RULES:
        raise ConfigError(f"unknown derivation rule {name!r}; choose from {', '.join(DERIVE_RULES)}")
    return DERIVE_RULES[name]


def derive_from_weights(
    space: CellSpace,
    normal: torch.Tensor,
    reduce: torch.Tensor,
    edge_normal: torch.Tensor | None = None,
    edge_reduce: torch.Tensor | None = None,
    meta: dict | None = None,
    rule: str = "top2",
    **options: float,
) -> Genotype:
    """``normal``/``reduce``: ``[sets, edges, ops]``; edge weights ``[sets, edges]`` or None.

    ``rule``: a ``DERIVE_RULES`` name; ``options`` go to it (e.g. ``threshold``).
    """
    derive = get_rule(rule)

    def cells(w: torch.Tensor, ew: torch.Tensor | None, cell_type: str) -> tuple[CellGenotype, ...]:
        out = []
        for s in range(w.shape[0]):
            ws = w[s] if ew is None else w[s] * ew[s].unsqueeze(-1)
            out.append(derive(ws, space.ops(cell_type), **options))
        return tuple(out)

    return Genotype(cells(normal, edge_normal, "normal"), cells(reduce, edge_reduce, "reduce"), meta=dict(meta or {}))


@torch.no_grad()
def derive_genotype(model: DartsSupernet, meta: dict | None = None, rule: str = "top2", **options: float) -> Genotype:
    w = model.arch_weights()
    info = {"space": model.space.name, **(meta or {})}
    return derive_from_weights(
        model.space, w["normal"], w["reduce"], w.get("edge_normal"), w.get("edge_reduce"), info, rule, **options
    )


# ------------------------------------------------------------------ pictures
def _cell_dot(cell: CellGenotype, title: str):  # noqa: ANN202
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
