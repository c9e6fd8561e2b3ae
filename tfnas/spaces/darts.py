"""DARTS cell search spaces: S0 (the 8 DARTS ops) and RobustDARTS S1..S4.

A cell has two input nodes (outputs of the previous two cells), four
intermediate nodes, each fed by every earlier node (2 + 3 + 4 + 5 = 14 edges),
and an output that concatenates the intermediate nodes. Each space lists, per
edge and per cell type (normal / reduce), the candidate ops. The data lives in
``configs/darts/spaces.json`` (a copy of the project's reference table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.ops.darts_ops import OPS
from tfnas.resources import shipped_dir
from tfnas.utils.io import read_json

NUM_INPUT_NODES = 2
NUM_NODES = 4  # intermediate nodes per cell
CELL_TYPES = ("normal", "reduce")
DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def cell_edges(num_nodes: int = NUM_NODES) -> list[tuple[int, int]]:
    """``(node, source)`` per edge in canonical order; nodes are numbered from 2."""
    return [(NUM_INPUT_NODES + i, j) for i in range(num_nodes) for j in range(NUM_INPUT_NODES + i)]


NUM_EDGES = len(cell_edges())
_EDGE_SOURCES = tuple(src for _, src in cell_edges())


def node_edge_slices(num_nodes: int = NUM_NODES) -> list[slice]:
    """Per intermediate node, the slice of the edge list that feeds it."""
    out, start = [], 0
    for i in range(num_nodes):
        n = NUM_INPUT_NODES + i
        out.append(slice(start, start + n))
        start += n
    return out


def reduction_indices(num_cells: int) -> tuple[int, int]:
    """Reduction cells sit at 1/3 and 2/3 of the depth."""
    return num_cells // 3, 2 * num_cells // 3


def stage_of(cell_index: int, num_cells: int) -> int:
    """0 (low), 1 (mid) or 2 (high): which stage between reductions a cell belongs to."""
    r1, r2 = reduction_indices(num_cells)
    return 0 if cell_index < r1 else (1 if cell_index < r2 else 2)


@dataclass(frozen=True)
class CellPlan:
    """One cell of a DARTS macro network: what the supernet, the evaluation network and the latency
    keys must agree on, so all three read it from ``cell_plan`` instead of each walking the network."""

    index: int
    reduction: bool
    reduction_prev: bool  # the first input is from before a reduction: FactorizedReduce brings it down
    alpha_set: int  # stage (normal) or reduction number (reduce): multi-level alphas, genotype cell
    C: int  # channels of every node inside the cell
    C_pp: int  # channels of the first input (the cell two back, or the stem)
    C_p: int  # channels of the second input (the previous cell, or the stem)
    C_out: int  # channels of the output: concatenated nodes x C
    H_in: int  # resolution of the second input (the first is twice that when ``reduction_prev``)

    def src_stride(self, src: int) -> int:
        """Stride of an edge leaving node ``src``: reduction cells halve their two inputs, nothing else."""
        return 2 if self.reduction and src < NUM_INPUT_NODES else 1

    def src_resolution(self, src: int) -> int:
        """Resolution of node ``src`` (cell inputs at ``H_in``; a reduction cell's intermediate nodes halved)."""
        return self.H_in // 2 if self.reduction and src >= NUM_INPUT_NODES else self.H_in

    def edge_stride(self, edge: int) -> int:
        return self.src_stride(edge_source(edge))

    def edge_resolution(self, edge: int) -> int:
        return self.src_resolution(edge_source(edge))


def edge_source(edge: int) -> int:
    """The node an edge (canonical order, ``cell_edges``) leaves from."""
    return _EDGE_SOURCES[edge]


def cell_plan(
    C: int,
    num_cells: int,
    stem_multiplier: int = 3,
    resolution: int | None = None,
    imagenet_stem: bool = False,
    outputs: Callable[[bool, int], int] | None = None,
) -> list[CellPlan]:
    """The cells of a DARTS network with ``C`` initial channels: reductions at 1/3 and 2/3 of the depth
    double the channels and halve the resolution.

    The CIFAR stem keeps the input resolution (default 32) with ``stem_multiplier * C`` channels;
    the ImageNet stem (``imagenet_stem``) divides it by 8 (default 224) with ``C`` channels, its
    second half being a reduction. ``outputs(reduction, alpha_set)``: how many nodes a cell
    concatenates (a genotype's ``len(concat)``); default all ``NUM_NODES``.
    """
    if imagenet_stem:
        C_pp = C_p = C
        H, reduction_prev = (resolution or 224) // 8, True
    else:
        C_pp = C_p = stem_multiplier * C
        H, reduction_prev = resolution or 32, False
    reductions = reduction_indices(num_cells)
    plan, C_cell = [], C
    for i in range(num_cells):
        reduction = i in reductions
        if reduction:
            C_cell *= 2
        alpha_set = reductions.index(i) if reduction else stage_of(i, num_cells)
        C_out = (outputs(reduction, alpha_set) if outputs else NUM_NODES) * C_cell
        plan.append(CellPlan(i, reduction, reduction_prev, alpha_set, C_cell, C_pp, C_p, C_out, H))
        if reduction:
            H //= 2
        reduction_prev = reduction
        C_pp, C_p = C_p, C_out
    return plan


@dataclass(frozen=True)
class CellSpace:
    """Per-edge candidate ops for normal and reduction cells."""

    name: str
    normal: tuple[tuple[str, ...], ...]
    reduce: tuple[tuple[str, ...], ...]

    def ops(self, cell_type: str) -> tuple[tuple[str, ...], ...]:
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell type must be one of {CELL_TYPES}, got {cell_type!r}")
        return self.normal if cell_type == "normal" else self.reduce

    @property
    def num_ops(self) -> int:
        """Candidates per edge (uniform within a space, so alphas form one matrix)."""
        return len(self.normal[0])

    def to_dict(self) -> dict:
        return {"normal": [list(e) for e in self.normal], "reduce": [list(e) for e in self.reduce]}

    @classmethod
    def from_dict(cls, name: str, data: Any, source: str = "<inline DARTS space>") -> CellSpace:
        """Checked against ``tfnas.config.schemas.DartsCellSpace``, then edge by edge; errors name ``source``."""
        from tfnas.config import validate
        from tfnas.config.schemas import DartsCellSpace

        prefix = () if source.startswith("<") else (name,)
        d = validate(DartsCellSpace, data, source, prefix)
        space = cls(name, tuple(tuple(e) for e in d["normal"]), tuple(tuple(e) for e in d["reduce"]))
        space.validate(source)
        return space

    def validate(self, source: str = "<DARTS space>") -> None:
        where = f"{source}: space {self.name}"
        for cell_type in CELL_TYPES:
            edges = self.ops(cell_type)
            if len(edges) != NUM_EDGES:
                raise ConfigError(f"{where}: {cell_type} has {len(edges)} edges, need {NUM_EDGES}")
            for k, ops in enumerate(edges):
                if len(ops) != self.num_ops:
                    raise ConfigError(
                        f"{where}: {cell_type} edge {k} has {len(ops)} ops; every edge needs {self.num_ops}"
                    )
                unknown = [o for o in ops if o not in OPS]
                if unknown:
                    raise ConfigError(f"{where}: {cell_type} edge {k}: unknown ops {unknown}")
                if len(set(ops)) != len(ops):
                    raise ConfigError(f"{where}: {cell_type} edge {k} repeats an op: {ops}")


def spaces_file() -> Path:
    return shipped_dir("configs/darts") / "spaces.json"


@cache
def _load_all(path: str) -> dict[str, CellSpace]:
    """Every space of a spaces file (keys starting with '_' are comments)."""
    raw = read_json(path, "DARTS spaces file")
    if not isinstance(raw, dict):
        raise ConfigError(f"DARTS spaces file {path}: expected an object of space name -> {{normal, reduce}}")
    return {k: CellSpace.from_dict(k, v, path) for k, v in raw.items() if not k.startswith("_")}


def available_spaces() -> list[str]:
    return sorted(_load_all(str(spaces_file())))


def load_space(name_or_dict: str | dict, path: str | Path | None = None) -> CellSpace:
    """A space by name (``s0``..``s4``) or from an inline dict with ``normal``/``reduce``."""
    if isinstance(name_or_dict, dict):
        return CellSpace.from_dict(name_or_dict.get("name") or "custom", name_or_dict)
    if not isinstance(name_or_dict, str):
        raise ConfigError(f"a DARTS space is a name (s0..s4) or a {{normal, reduce}} mapping, got {name_or_dict!r}")
    spaces = _load_all(str(path or spaces_file()))
    key = name_or_dict.lower()
    if key not in spaces:
        raise ConfigError(f"unknown DARTS space {name_or_dict!r}; choose from {', '.join(sorted(spaces))}")
    return spaces[key]
