"""The derived-architecture file: the contract between search, training and export.

A small versioned JSON document::

    {"format": "tfnas.arch", "version": 1, "space": "tfnas_imagenet", "resolution": 224,
     "stages": [{"depth": 2, "layers": [{"op": "k3_e3", "width": 48}, ...]}, ...],
     "meta": {...free-form: target, predicted latency, search settings...}}

Every stage lists all its layers (their choice is kept even beyond the chosen
depth, so a file can be edited to a deeper net), and ``depth`` says how many are
used: the sink point of the stage.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from tfnas.config.loader import Schema, read_config, validate
from tfnas.errors import ConfigError
from tfnas.mbv2.space import LayerGeometry, MBV2Space, load_space
from tfnas_base.atomic import atomic_write_json

ARCH_FORMAT = "tfnas.arch"
ARCH_VERSION = 1


_UNSET: Any = object()


class LayerChoice(Schema):
    """One layer of an architecture file: its op and mid width."""

    op: str
    width: int

    def __init__(self, op: Any = _UNSET, width: Any = _UNSET, **data: Any) -> None:
        super().__init__(**{k: v for k, v in (("op", op), ("width", width)) if v is not _UNSET}, **data)


class ArchStage(Schema):
    depth: int
    layers: list[LayerChoice]


class ArchFile(Schema):
    """The file's keys and types; the space checks ops, widths and depths (``Architecture.validate``)."""

    format: str
    version: int
    space: str
    resolution: int | None = Field(None, ge=8)
    stages: list[ArchStage]
    meta: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Architecture:
    """A point of an ``MBV2Space``: an op and mid width per layer, a depth per stage."""

    space: MBV2Space
    stages: list[list[LayerChoice]]
    depths: list[int]
    resolution: int
    meta: dict[str, Any] = field(default_factory=dict)

    def active_layers(self) -> list[tuple[LayerGeometry, LayerChoice]]:
        """The layers the network runs (those before each stage's sink point), with geometry."""
        geos = self.space.layers(self.resolution)
        out = []
        for g in geos:
            if g.index < self.depths[g.stage]:
                out.append((g, self.stages[g.stage][g.index]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARCH_FORMAT,
            "version": ARCH_VERSION,
            "space": self.space.name,
            "resolution": self.resolution,
            "stages": [
                {"depth": d, "layers": [{"op": c.op, "width": c.width} for c in layers]}
                for d, layers in zip(self.depths, self.stages)
            ],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    def validate(self, source: str = "<architecture>") -> Architecture:
        """Check ops, widths and depths against the space; errors name the layer and value."""
        sp = self.space
        if len(self.stages) != len(sp.stages) or len(self.depths) != len(sp.stages):
            raise ConfigError(
                f"{source}: 'stages' has {len(self.stages)} entries, space {sp.name!r} has {len(sp.stages)}"
            )
        if not isinstance(self.resolution, int) or sp.final_size(self.resolution) < 1:
            raise ConfigError(f"{source}: 'resolution' = {self.resolution!r}: too small for space {sp.name!r}")
        geos = sp.layers(self.resolution)
        for g in geos:
            layers = self.stages[g.stage]
            if len(layers) != sp.stages[g.stage].layers:
                raise ConfigError(
                    f"{source}: stages[{g.stage}].layers has {len(layers)} layers,"
                    f" space {sp.name!r} stage {g.stage} has {sp.stages[g.stage].layers}"
                )
            c = layers[g.index]
            where = f"{source}: stages[{g.stage}].layers[{g.index}]"
            if c.op not in sp.ops:
                raise ConfigError(f"{where}.op = {c.op!r}: unknown op; space {sp.name!r} has {', '.join(sp.ops)}")
            lo, hi = sp.width_bounds(c.op, g.in_ch)
            if not isinstance(c.width, int) or isinstance(c.width, bool) or not lo <= c.width <= hi:
                raise ConfigError(f"{where}.width = {c.width!r}: expected an integer in [{lo}, {hi}] for op {c.op}")
        for s, d in enumerate(self.depths):
            lo, hi = sp.min_depth(s), sp.stages[s].layers
            if not isinstance(d, int) or isinstance(d, bool) or not lo <= d <= hi:
                raise ConfigError(f"{source}: stages[{s}].depth = {d!r}: expected an integer in [{lo}, {hi}]")
        return self

    # ---- constructors ----------------------------------------------------------------------------------
    @classmethod
    def uniform(cls, space: MBV2Space, op: str, resolution: int | None = None, width: str = "default") -> Architecture:
        """Every layer ``op`` at its default ('default'), smallest ('min') or largest ('max') width; full depth."""
        res = resolution or space.resolution
        stages: list[list[LayerChoice]] = [[] for _ in space.stages]
        for g in space.layers(res):
            stages[g.stage].append(LayerChoice(op, _pick_width(space, op, g.in_ch, width)))
        return cls(space, stages, [s.layers for s in space.stages], res).validate()

    @classmethod
    def random(cls, space: MBV2Space, rng: _random.Random, resolution: int | None = None) -> Architecture:
        """A uniformly random op, width and depth everywhere (for latency benchmarks)."""
        res = resolution or space.resolution
        stages: list[list[LayerChoice]] = [[] for _ in space.stages]
        for g in space.layers(res):
            op = rng.choice(sorted(space.ops))
            lo, hi = space.width_bounds(op, g.in_ch)
            stages[g.stage].append(LayerChoice(op, rng.randint(lo, hi)))
        depths = [rng.randint(space.min_depth(s), st.layers) for s, st in enumerate(space.stages)]
        return cls(space, stages, depths, res).validate()

    @classmethod
    def from_dict(cls, data: Any, source: str = "<architecture>", space: MBV2Space | None = None) -> Architecture:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != ARCH_FORMAT:
            raise ConfigError(f"{source}: 'format' = {data.get('format')!r}: expected {ARCH_FORMAT!r}")
        if data.get("version") != ARCH_VERSION:
            raise ConfigError(f"{source}: 'version' = {data.get('version')!r}: this tfnas reads version {ARCH_VERSION}")
        d = validate(ArchFile, data, source)  # keys and types; the space checks ops, widths and depths
        if space is not None:
            sp = space
        else:
            try:
                sp = load_space(d.space)
            except ConfigError as e:
                raise ConfigError(f"{source}: 'space': {e}") from None
        if space is not None and d.space != space.name:
            raise ConfigError(f"{source}: 'space' = {d.space!r} but the given space is {space.name!r}")
        stages = [list(st.layers) for st in d.stages]
        depths = [st.depth for st in d.stages]
        return cls(sp, stages, depths, d.resolution or sp.resolution, dict(d.meta)).validate(source)


def _pick_width(space: MBV2Space, op: str, in_ch: int, which: str) -> int:
    lo, hi = space.width_bounds(op, in_ch)
    return {"min": lo, "max": hi, "default": space.default_width(op, in_ch)}[which]


def load_arch(path: str | Path, space: MBV2Space | None = None) -> Architecture:
    """Read and validate a derived-architecture file."""
    return Architecture.from_dict(read_config(path, "architecture file"), str(path), space)
