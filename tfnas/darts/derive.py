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

import torch

from tfnas.darts.space import NUM_INPUT_NODES, NUM_NODES, CellGenotype, CellSpace, Genotype, node_edge_slices
from tfnas.darts.supernet import DartsSupernet
from tfnas.registry import Registry

EdgeOps = tuple[tuple[str, ...], ...]
DeriveRule = Callable[..., CellGenotype]
DERIVE_RULES: Registry[DeriveRule] = Registry("derivation rule")


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


@DERIVE_RULES.register("top2")
def derive_cell(weights: torch.Tensor, edge_ops: EdgeOps, keep: int = 2) -> CellGenotype:
    """``weights``: ``[edges, ops]`` op weights of one cell type (already normalised)."""
    w = weights.detach().float().cpu()
    edges: list[tuple[str, int]] = []
    for sl in node_edge_slices():
        edges.extend((op, src) for _, src, op in _strongest_edges(w, edge_ops, sl, keep))
    return CellGenotype(tuple(edges), tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES)))


@DERIVE_RULES.register("threshold")
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
