"""DARTS genotypes: the derived cell architecture, its JSON form and the published ones.

A cell genotype keeps the incoming edges of each intermediate node as
``(op, source_node)`` pairs (sources 0/1 are the cell inputs), node after node,
``node_inputs[i]`` of them for node ``2 + i``, and the nodes it concatenates.
DARTS keeps exactly two inputs per node; Fair DARTS's threshold rule keeps 0, 1
or 2, and a node without inputs is left out of the cell (and of ``concat``). A
network genotype holds one normal and one reduction cell, or, for multi-level
search, one normal cell per stage (low/mid/high) and one reduction cell per
reduction (two).

JSON version 2 adds ``node_inputs``; version 1 files (two inputs per node) still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.ops.darts_ops import OPS
from tfnas.spaces.darts import NUM_INPUT_NODES, NUM_NODES
from tfnas.utils.io import atomic_write_json, read_json

FORMAT = "tfnas.darts-genotype"
VERSION = 2


@dataclass(frozen=True)
class CellGenotype:
    edges: tuple[tuple[str, int], ...]
    concat: tuple[int, ...] = tuple(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_NODES))
    node_inputs: tuple[int, ...] | None = None  # edges per intermediate node; None: two each (DARTS)

    def __post_init__(self) -> None:
        # one spelling per cell: two inputs everywhere is the DARTS form (None), so equal cells compare equal
        if self.node_inputs is not None and len(self.node_inputs) == NUM_NODES and set(self.node_inputs) == {2}:
            object.__setattr__(self, "node_inputs", None)

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

    def validate(self, where: str = "cell") -> None:
        if self.node_inputs is None and len(self.edges) % 2:
            raise ConfigError(f"{where}: needs two edges per node, got {len(self.edges)} edges")
        counts = self.inputs_per_node
        if any(n < 0 for n in counts) or sum(counts) != len(self.edges):
            raise ConfigError(f"{where}: node_inputs {list(counts)} do not add up to its {len(self.edges)} edges")
        empty = {NUM_INPUT_NODES + i for i, n in enumerate(counts) if n == 0}
        for k, ((op, src), node) in enumerate(zip(self.edges, self.targets)):
            if op not in OPS:
                raise ConfigError(f"{where}: edge {k} has unknown op {op!r}")
            if not 0 <= int(src) < node:
                raise ConfigError(f"{where}: edge {k} into node {node} comes from node {src}")
            if src in empty:
                raise ConfigError(f"{where}: edge {k} into node {node} comes from node {src}, which has no inputs")
        last = NUM_INPUT_NODES + len(counts)
        if not self.concat or any(not 0 <= c < last or c in empty for c in self.concat):
            raise ConfigError(f"{where}: concat {list(self.concat)} must name nodes 0..{last - 1} that have inputs")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": [[op, int(src)] for op, src in self.edges], "concat": list(self.concat)}
        if self.node_inputs is not None:
            out["node_inputs"] = list(self.node_inputs)
        return out

    @classmethod
    def from_obj(cls, obj: Any, concat: Any = None, where: str = "cell") -> CellGenotype:
        """From ``{"edges": [...], "concat": [...], "node_inputs": [...]}`` or a bare ``[(op, src), ...]``."""
        counts = None
        if isinstance(obj, dict):
            edges, concat, counts = obj.get("edges"), obj.get("concat", concat), obj.get("node_inputs")
        else:
            edges = obj
        try:
            cell = cls(
                tuple((str(op), int(src)) for op, src in edges),
                tuple(int(c) for c in (concat if concat is not None else cls.concat)),
                tuple(int(n) for n in counts) if counts is not None else None,
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: malformed edges ({e})") from None
        cell.validate(where)
        return cell


@dataclass(frozen=True)
class Genotype:
    normal: tuple[CellGenotype, ...]
    reduce: tuple[CellGenotype, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.normal) not in (1, 3) or len(self.reduce) not in (1, 2):
            raise ConfigError(
                f"genotype needs 1 or 3 normal cells and 1 or 2 reduction cells,"
                f" got {len(self.normal)} and {len(self.reduce)}"
            )

    @property
    def multi_level(self) -> bool:
        return len(self.normal) > 1 or len(self.reduce) > 1

    def normal_cell(self, stage: int) -> CellGenotype:
        return self.normal[stage if len(self.normal) > 1 else 0]

    def reduce_cell(self, reduction: int) -> CellGenotype:
        return self.reduce[reduction if len(self.reduce) > 1 else 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "normal": [c.to_dict() for c in self.normal],
            "reduce": [c.to_dict() for c in self.reduce],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        if not isinstance(data, dict):
            raise ConfigError("genotype must be a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise ConfigError(f"not a DARTS genotype (format {data.get('format')!r})")
        if int(data.get("version", VERSION)) > VERSION:
            raise ConfigError(f"genotype version {data['version']} is newer than supported ({VERSION})")
        if "normal" not in data or "reduce" not in data:
            raise ConfigError("genotype needs 'normal' and 'reduce'")
        normal, reduce = data["normal"], data["reduce"]
        # DARTS-style flat form: normal=[[op, src], ...], normal_concat=[...]
        if normal and not isinstance(normal[0], dict) and isinstance(normal[0][0], str):
            normal, reduce = [normal], [reduce]
            nc, rc = [data.get("normal_concat")], [data.get("reduce_concat")]
        else:
            nc, rc = [None] * len(normal), [None] * len(reduce)
        return cls(
            tuple(CellGenotype.from_obj(c, k, f"normal[{i}]") for i, (c, k) in enumerate(zip(normal, nc))),
            tuple(CellGenotype.from_obj(c, k, f"reduce[{i}]") for i, (c, k) in enumerate(zip(reduce, rc))),
            meta=dict(data.get("meta", {})),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        return cls.from_dict(read_json(path, "genotype"))


def _g(normal: list[tuple[str, int]], reduce: list[tuple[str, int]], source: str) -> Genotype:
    return Genotype((CellGenotype(tuple(normal)),), (CellGenotype(tuple(reduce)),), meta={"source": source})


# Published cells (CIFAR-10 searches unless stated), transcribed from the authors' genotypes.py files.
PUBLISHED: dict[str, Genotype] = {
    "DARTS_V1": _g(
        [
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ],
        [
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ],
        "DARTS first order (Liu et al., 2019), quark0/darts",
    ),  # fmt: skip
    "DARTS_V2": _g(
        [
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ],
        [
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ],
        "DARTS second order (Liu et al., 2019), quark0/darts",
    ),  # fmt: skip
    "PC_DARTS": _g(
        [
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 0),
            ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0),
            ("sep_conv_3x3", 1),
            ("avg_pool_3x3", 0),
            ("dil_conv_3x3", 1),
        ],
        [
            ("sep_conv_5x5", 1),
            ("max_pool_3x3", 0),
            ("sep_conv_5x5", 1),
            ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 3),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 2),
        ],
        "PC-DARTS CIFAR-10 (Xu et al., 2020), yuhuixu1993/PC-DARTS",
    ),  # fmt: skip
    "PC_DARTS_IMAGENET": _g(
        [
            ("skip_connect", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 3),
            ("sep_conv_3x3", 1),
            ("dil_conv_5x5", 4),
        ],
        [
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
            ("dil_conv_5x5", 2),
            ("max_pool_3x3", 1),
            ("sep_conv_3x3", 2),
            ("sep_conv_3x3", 1),
            ("sep_conv_5x5", 0),
            ("sep_conv_3x3", 3),
        ],
        "PC-DARTS searched on ImageNet (Xu et al., 2020), yuhuixu1993/PC-DARTS",
    ),  # fmt: skip
    "PDARTS": _g(
        [
            ("skip_connect", 0),
            ("dil_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 3),
            ("sep_conv_3x3", 0),
            ("dil_conv_5x5", 4),
        ],
        [
            ("avg_pool_3x3", 0),
            ("sep_conv_5x5", 1),
            ("sep_conv_3x3", 0),
            ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0),
            ("dil_conv_3x3", 1),
            ("dil_conv_3x3", 1),
            ("dil_conv_5x5", 3),
        ],
        "P-DARTS (Chen et al., 2019), chenxin061/pdarts",
    ),  # fmt: skip
}
PUBLISHED["DARTS"] = PUBLISHED["DARTS_V2"]


def get_genotype(name_or_path: str | Path) -> Genotype:
    """A published genotype by name (case-insensitive) or a genotype JSON file."""
    key = str(name_or_path).upper().replace("-", "_")
    if key in PUBLISHED:
        return PUBLISHED[key]
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return Genotype.load(path)
    raise ConfigError(f"unknown genotype {name_or_path!r}: not a file and not one of {', '.join(sorted(PUBLISHED))}")
