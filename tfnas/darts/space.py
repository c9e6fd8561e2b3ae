"""DARTS cell search spaces (S0 and RobustDARTS S1..S4) and the genotypes derived from them.

A cell has two input nodes (outputs of the previous two cells), four
intermediate nodes, each fed by every earlier node (2 + 3 + 4 + 5 = 14 edges),
and an output that concatenates the intermediate nodes. Each space lists, per
edge and per cell type (normal / reduce), the candidate ops; the data lives in
``configs/darts/spaces.json`` (a copy of the project's reference table).

A cell genotype keeps the incoming edges of each intermediate node as
``(op, source_node)`` pairs (sources 0/1 are the cell inputs), node after node,
``node_inputs[i]`` of them for node ``2 + i``, and the nodes it concatenates.
DARTS keeps exactly two inputs per node; Fair DARTS's threshold rule keeps 0, 1
or 2, and a node without inputs is left out of the cell (and of ``concat``). A
network genotype holds one normal and one reduction cell, or, for multi-level
search, one normal cell per stage (low/mid/high) and one reduction cell per
reduction (two). Genotype JSON version 2 adds ``node_inputs``; version 1 files
(two inputs per node) and the DARTS flat form (``normal``, ``normal_concat``) load.

Plain data: importable (and genotypes readable) without torch; ``tfnas.darts.ops``
registers a builder for every name in ``OP_NAMES``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tfnas.config.loader import Schema, read_config, validate
from tfnas.errors import ConfigError
from tfnas.registry import Registry, did_you_mean
from tfnas.resources import shipped_dir
from tfnas_base.atomic import atomic_write_json

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
# every op a space or genotype may name (S0's eight, RobustDARTS's noise, and two published extras)
OP_NAMES = (*DARTS_OPS, "noise", "sep_conv_7x7", "conv_7x1_1x7")


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


class CellSpace(Schema):
    """Per-edge candidate ops for normal and reduction cells (one space of ``configs/darts/spaces.json``)."""

    name: str = "custom"
    normal: tuple[tuple[str, ...], ...] = Field(min_length=1)
    reduce: tuple[tuple[str, ...], ...] = Field(min_length=1)

    @field_validator("normal", "reduce", mode="before")
    @classmethod
    def _lists_as_tuples(cls, v: Any) -> Any:
        return tuple(tuple(e) if isinstance(e, list) else e for e in v) if isinstance(v, list) else v

    @model_validator(mode="after")
    def _edges(self) -> CellSpace:
        for cell_type in CELL_TYPES:
            edges = self.ops(cell_type)
            if len(edges) != NUM_EDGES:
                raise ValueError(f"{cell_type} has {len(edges)} edges, need {NUM_EDGES}")
            for k, ops in enumerate(edges):
                if len(ops) != self.num_ops:
                    raise ValueError(f"{cell_type} edge {k} has {len(ops)} ops; every edge needs {self.num_ops}")
                unknown = [o for o in ops if o not in OP_NAMES]
                if unknown:
                    raise ValueError(
                        f"{cell_type} edge {k}: unknown ops {unknown}{did_you_mean(unknown[0], list(OP_NAMES))}"
                    )
                if len(set(ops)) != len(ops):
                    raise ValueError(f"{cell_type} edge {k} repeats an op: {list(ops)}")
        return self

    def ops(self, cell_type: str) -> tuple[tuple[str, ...], ...]:
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell type must be one of {CELL_TYPES}, got {cell_type!r}")
        return self.normal if cell_type == "normal" else self.reduce

    @property
    def num_ops(self) -> int:
        """Candidates per edge (uniform within a space, so alphas form one matrix)."""
        return len(self.normal[0])


def spaces_file() -> Path:
    return shipped_dir("configs/darts") / "spaces.json"


@cache
def _load_all(path: str) -> dict[str, CellSpace]:
    """Every space of a spaces file (keys starting with '_' are comments)."""
    raw = read_config(path, "DARTS spaces file")
    if not isinstance(raw, dict):
        raise ConfigError(f"DARTS spaces file {path}: expected an object of space name -> {{normal, reduce}}")
    return {k: validate(CellSpace, {"name": k, **v} if isinstance(v, dict) else v, path, (k,))
            for k, v in raw.items() if not k.startswith("_")}  # fmt: skip


def available_cell_spaces() -> list[str]:
    return sorted(_load_all(str(spaces_file())))


def load_cell_space(name_or_dict: str | dict | CellSpace, path: str | Path | None = None) -> CellSpace:
    """A space by name (``s0``..``s4``), from an inline ``{normal, reduce}`` mapping, or as given."""
    if isinstance(name_or_dict, CellSpace):
        return name_or_dict
    if isinstance(name_or_dict, dict):
        return validate(CellSpace, name_or_dict, "<inline DARTS space>", ("space",))
    if not isinstance(name_or_dict, str):
        raise ConfigError(f"a DARTS space is a name (s0..s4) or a {{normal, reduce}} mapping, got {name_or_dict!r}")
    spaces = _load_all(str(path or spaces_file()))
    key = name_or_dict.lower()
    if key not in spaces:
        raise ConfigError(
            f"unknown DARTS space {name_or_dict!r}; choose from {', '.join(sorted(spaces))}"
            + did_you_mean(key, sorted(spaces))
        )
    return spaces[key]


# ---- genotypes -------------------------------------------------------------------------------------------
GENOTYPE_FORMAT = "tfnas.darts-genotype"
GENOTYPE_VERSION = 2
ALL_NODES = tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES))


_UNSET: Any = object()  # an argument not given (positional construction: ``CellGenotype(edges)``)


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not _UNSET}


def _as_tuples(v: Any) -> Any:
    """JSON lists -> tuples (structure only: element types are still checked strictly)."""
    if isinstance(v, list):
        return tuple(_as_tuples(e) for e in v)
    return v


class CellGenotype(Schema):
    edges: tuple[tuple[str, int], ...]
    concat: tuple[int, ...] = ALL_NODES
    node_inputs: tuple[int, ...] | None = None  # edges per intermediate node; None: two each (DARTS)

    def __init__(self, edges: Any = _UNSET, concat: Any = _UNSET, node_inputs: Any = _UNSET, **data: Any) -> None:
        super().__init__(**_given(edges=edges, concat=concat, node_inputs=node_inputs), **data)

    @field_validator("edges", "concat", "node_inputs", mode="before")
    @classmethod
    def _tuples(cls, v: Any) -> Any:
        return _as_tuples(v)

    @model_validator(mode="after")
    def _valid(self) -> CellGenotype:
        # one spelling per cell: two inputs everywhere is the DARTS form (None), so equal cells compare equal
        if self.node_inputs is not None and len(self.node_inputs) == NUM_NODES and set(self.node_inputs) == {2}:
            object.__setattr__(self, "node_inputs", None)
        if self.node_inputs is None and len(self.edges) % 2:
            raise ValueError(f"needs two edges per node, got {len(self.edges)} edges")
        counts = self.inputs_per_node
        if any(n < 0 for n in counts) or sum(counts) != len(self.edges):
            raise ValueError(f"node_inputs {list(counts)} do not add up to its {len(self.edges)} edges")
        empty = {NUM_INPUT_NODES + i for i, n in enumerate(counts) if n == 0}
        for k, ((op, src), node) in enumerate(zip(self.edges, self.targets)):
            if op not in OP_NAMES:
                raise ValueError(f"edge {k} has unknown op {op!r}{did_you_mean(op, list(OP_NAMES))}")
            if not 0 <= src < node:
                raise ValueError(f"edge {k} into node {node} comes from node {src}")
            if src in empty:
                raise ValueError(f"edge {k} into node {node} comes from node {src}, which has no inputs")
        last = NUM_INPUT_NODES + len(counts)
        if not self.concat or any(not 0 <= c < last or c in empty for c in self.concat):
            raise ValueError(f"concat {list(self.concat)} must name nodes 0..{last - 1} that have inputs")
        return self

    @property
    def inputs_per_node(self) -> tuple[int, ...]:
        return self.node_inputs if self.node_inputs is not None else (2,) * (len(self.edges) // 2)

    @property
    def targets(self) -> tuple[int, ...]:
        """The node each edge feeds, in edge order."""
        return tuple(NUM_INPUT_NODES + i for i, n in enumerate(self.inputs_per_node) for _ in range(n))

    @property
    def num_nodes(self) -> int:
        return len(self.inputs_per_node)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": [[op, src] for op, src in self.edges], "concat": list(self.concat)}
        if self.node_inputs is not None:
            out["node_inputs"] = list(self.node_inputs)
        return out


class Genotype(Schema):
    """A network's cells; ``meta`` (where it came from) is not part of its identity."""

    format: Literal["tfnas.darts-genotype"] = GENOTYPE_FORMAT
    version: int = Field(GENOTYPE_VERSION, ge=1, le=GENOTYPE_VERSION)
    normal: tuple[CellGenotype, ...]
    reduce: tuple[CellGenotype, ...]
    meta: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, normal: Any = _UNSET, reduce: Any = _UNSET, meta: Any = _UNSET, **data: Any) -> None:
        super().__init__(**_given(normal=normal, reduce=reduce, meta=meta), **data)

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        """DARTS's flat form (``normal: [[op, src], ...]``, ``normal_concat``) -> one cell per type."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for kind in CELL_TYPES:
            cells, concat = data.get(kind), data.pop(f"{kind}_concat", None)
            flat = isinstance(cells, list | tuple) and cells and isinstance(cells[0], list | tuple) and cells[0]
            if flat and isinstance(cells[0][0], str):
                data[kind] = ({"edges": cells, **({"concat": concat} if concat is not None else {})},)
            elif isinstance(cells, list):
                data[kind] = tuple(cells)
        return data

    @model_validator(mode="after")
    def _cell_counts(self) -> Genotype:
        if len(self.normal) not in (1, 3) or len(self.reduce) not in (1, 2):
            raise ValueError(
                f"a genotype needs 1 or 3 normal cells and 1 or 2 reduction cells,"
                f" got {len(self.normal)} and {len(self.reduce)}"
            )
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genotype) and (self.normal, self.reduce) == (other.normal, other.reduce)

    def __hash__(self) -> int:
        return hash((self.normal, self.reduce))

    def with_meta(self, **meta: Any) -> Genotype:
        return self.model_copy(update={"meta": {**self.meta, **meta}})

    @property
    def multi_level(self) -> bool:
        return len(self.normal) > 1 or len(self.reduce) > 1

    def normal_cell(self, stage: int) -> CellGenotype:
        return self.normal[stage if len(self.normal) > 1 else 0]

    def reduce_cell(self, reduction: int) -> CellGenotype:
        return self.reduce[reduction if len(self.reduce) > 1 else 0]

    def cell(self, reduction: bool, alpha_set: int) -> CellGenotype:
        """The cell at a position of a network (``CellPlan.reduction``, ``CellPlan.alpha_set``)."""
        return self.reduce_cell(alpha_set) if reduction else self.normal_cell(alpha_set)

    def outputs(self, reduction: bool, alpha_set: int) -> int:
        """How many nodes that cell concatenates (the width of its output, in units of C)."""
        return len(self.cell(reduction, alpha_set).concat)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GENOTYPE_FORMAT,
            "version": GENOTYPE_VERSION,
            "normal": [c.to_dict() for c in self.normal],
            "reduce": [c.to_dict() for c in self.reduce],
            "meta": dict(self.meta),
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())


def genotype_from_dict(data: Any, source: str = "<genotype>") -> Genotype:
    """A genotype from JSON data; every error names ``source`` and the key path."""
    return validate(Genotype, data, source)


def load_genotype(path: str | Path) -> Genotype:
    return genotype_from_dict(read_config(path, "genotype file"), str(path))


def random_genotype(space: CellSpace, rng: random.Random) -> Genotype:
    """A DARTS genotype (two distinct inputs per node, ops from each edge's candidates, never ``none``)."""

    def cell(kind: str) -> CellGenotype:
        edges = []
        for node, sl in enumerate(node_edge_slices()):
            for src in sorted(rng.sample(range(NUM_INPUT_NODES + node), 2)):
                ops = [op for op in space.ops(kind)[sl.start + src] if op not in ("none", "noise")]
                edges.append((rng.choice(ops), src))
        return CellGenotype(tuple(edges))

    return Genotype((cell("normal"),), (cell("reduce"),))


def _g(normal: str, reduce: str, source: str) -> Genotype:
    """A published DARTS-style genotype from ``"op:source op:source ..."`` (two edges per node, in node order)."""

    def cell(text: str) -> CellGenotype:
        return CellGenotype(tuple((op, int(src)) for op, src in (e.split(":") for e in text.split())))

    return Genotype((cell(normal),), (cell(reduce),), meta={"source": source})


# Published cells (CIFAR-10 searches unless stated), transcribed from the authors' genotypes.py files.
PUBLISHED: Registry[Genotype] = Registry("genotype")  # case-insensitive through ``get_genotype``
PUBLISHED.add(
    "DARTS_V1",
    _g(
        "sep_conv_3x3:1 sep_conv_3x3:0 skip_connect:0 sep_conv_3x3:1 skip_connect:0 sep_conv_3x3:1 sep_conv_3x3:0 skip_connect:2",
        "max_pool_3x3:0 max_pool_3x3:1 skip_connect:2 max_pool_3x3:0 max_pool_3x3:0 skip_connect:2 skip_connect:2 avg_pool_3x3:0",
        "DARTS first order (Liu et al., 2019), quark0/darts",
    ),
)
PUBLISHED.add(
    "DARTS_V2",
    _g(
        "sep_conv_3x3:0 sep_conv_3x3:1 sep_conv_3x3:0 sep_conv_3x3:1 sep_conv_3x3:1 skip_connect:0 skip_connect:0 dil_conv_3x3:2",
        "max_pool_3x3:0 max_pool_3x3:1 skip_connect:2 max_pool_3x3:1 max_pool_3x3:0 skip_connect:2 skip_connect:2 max_pool_3x3:1",
        "DARTS second order (Liu et al., 2019), quark0/darts",
    ),
)
PUBLISHED.add(
    "PC_DARTS",
    _g(
        "sep_conv_3x3:1 skip_connect:0 sep_conv_3x3:0 dil_conv_3x3:1 sep_conv_5x5:0 sep_conv_3x3:1 avg_pool_3x3:0 dil_conv_3x3:1",
        "sep_conv_5x5:1 max_pool_3x3:0 sep_conv_5x5:1 sep_conv_5x5:2 sep_conv_3x3:0 sep_conv_3x3:3 sep_conv_3x3:1 sep_conv_3x3:2",
        "PC-DARTS CIFAR-10 (Xu et al., 2020), yuhuixu1993/PC-DARTS",
    ),
)
PUBLISHED.add(
    "PC_DARTS_IMAGENET",
    _g(
        "skip_connect:1 sep_conv_3x3:0 sep_conv_3x3:0 skip_connect:1 sep_conv_3x3:1 sep_conv_3x3:3 sep_conv_3x3:1 dil_conv_5x5:4",
        "sep_conv_3x3:0 skip_connect:1 dil_conv_5x5:2 max_pool_3x3:1 sep_conv_3x3:2 sep_conv_3x3:1 sep_conv_5x5:0 sep_conv_3x3:3",
        "PC-DARTS searched on ImageNet (Xu et al., 2020), yuhuixu1993/PC-DARTS",
    ),
)
PUBLISHED.add(
    "PDARTS",
    _g(
        "skip_connect:0 dil_conv_3x3:1 skip_connect:0 sep_conv_3x3:1 sep_conv_3x3:1 sep_conv_3x3:3 sep_conv_3x3:0 dil_conv_5x5:4",
        "avg_pool_3x3:0 sep_conv_5x5:1 sep_conv_3x3:0 dil_conv_5x5:2 max_pool_3x3:0 dil_conv_3x3:1 dil_conv_3x3:1 dil_conv_5x5:3",
        "P-DARTS (Chen et al., 2019), chenxin061/pdarts",
    ),
)
PUBLISHED.add("DARTS", PUBLISHED["DARTS_V2"])


def get_genotype(name_or_path: str | Path) -> Genotype:
    """A published genotype by name (case-insensitive) or a genotype JSON file."""
    key = str(name_or_path).upper().replace("-", "_")
    if key in PUBLISHED:
        return PUBLISHED[key]
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return load_genotype(path)
    return PUBLISHED[str(name_or_path)]  # neither: the registry's error names the published ones and the closest
