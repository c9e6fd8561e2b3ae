"""The TF-NAS MobileNetV2-style search space, loaded from YAML into typed objects.

The space is data (``configs/spaces/*.yaml``): a new resolution, stage layout or
op set needs a new YAML file, not new code. Every validation error names the
file, the key and the offending value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.resources import shipped_dir
from tfnas.utils.io import read_yaml

ACTIVATIONS = ("relu", "swish", "hswish")


@dataclass(frozen=True)
class OpSpec:
    """A candidate op: an inverted residual block with kernel, expansion and SE."""

    name: str
    kernel: int
    expansion: int
    se: bool


@dataclass(frozen=True)
class StemSpec:
    out: int
    kernel: int
    stride: int
    act: str


@dataclass(frozen=True)
class FirstBlockSpec:
    kernel: int
    mid: int
    out: int
    stride: int
    se: bool
    act: str


@dataclass(frozen=True)
class StageSpec:
    layers: int
    out: int
    stride: int
    act: str


@dataclass(frozen=True)
class HeadSpec:
    out: int
    act: str
    dropout: float = 0.0


@dataclass(frozen=True)
class LayerGeometry:
    """Where a searchable layer sits: what every op at this position sees."""

    stage: int  # 0-based
    index: int  # 0-based within the stage
    in_ch: int
    out_ch: int
    stride: int
    in_size: int  # input height == width at the space's resolution
    act: str


@dataclass(frozen=True)
class WidthRule:
    bound_factor: dict[int, int]
    min_fraction: float
    se_factor: dict[int, int]


@dataclass(frozen=True)
class MBV2Space:
    """A MobileNetV2-style space with per-layer op choice, per-stage depth, per-op width."""

    name: str
    resolution: int
    in_channels: int
    num_classes: int
    stem: StemSpec
    first_block: FirstBlockSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    ops: dict[str, OpSpec]
    width: WidthRule
    source: str = field(default="<memory>", compare=False)

    # ---- geometry -------------------------------------------------------------------------------------
    def layers(self, resolution: int | None = None) -> list[LayerGeometry]:
        """All searchable layers in order, with shapes at ``resolution`` (default: the space's)."""
        size = self.after_first_block_size(resolution)
        in_ch = self.first_block.out
        out: list[LayerGeometry] = []
        for s, stage in enumerate(self.stages):
            for i in range(stage.layers):
                stride = stage.stride if i == 0 else 1
                out.append(LayerGeometry(s, i, in_ch, stage.out, stride, size, stage.act))
                size = conv_out_size(size, stride)
                in_ch = stage.out
        return out

    def stage_layers(self, stage: int, resolution: int | None = None) -> list[LayerGeometry]:
        return [g for g in self.layers(resolution) if g.stage == stage]

    def after_first_block_size(self, resolution: int | None = None) -> int:
        size = conv_out_size(resolution or self.resolution, self.stem.stride)
        return conv_out_size(size, self.first_block.stride)

    def final_size(self, resolution: int | None = None) -> int:
        size = self.after_first_block_size(resolution)
        for stage in self.stages:
            size = conv_out_size(size, stage.stride)
        return size

    # ---- widths and depths ----------------------------------------------------------------------------
    def width_bounds(self, op: str, in_ch: int) -> tuple[int, int]:
        """Inclusive [min, max] mid-channel width of ``op`` for a layer with ``in_ch`` inputs."""
        spec = self.ops[op]
        upper = in_ch * self.width.bound_factor[spec.expansion]
        return max(1, int(math.ceil(upper * self.width.min_fraction))), upper

    def default_width(self, op: str, in_ch: int) -> int:
        """The starting width of a search: in_channels * expansion."""
        return in_ch * self.ops[op].expansion

    def se_width(self, op: str, in_ch: int) -> int:
        spec = self.ops[op]
        return in_ch * self.width.se_factor[spec.expansion] if spec.se else 0

    def min_depth(self, stage: int) -> int:
        """0 when the stage input itself can be a sink point (first layer keeps the shape)."""
        g = self.stage_layers(stage)[0]
        return 0 if (g.stride == 1 and g.in_ch == g.out_ch) else 1

    def stage_slices(self) -> list[tuple[int, int]]:
        """Per stage, the (start, end) indices of its layers in the flat layer list."""
        out, start = [], 0
        for st in self.stages:
            out.append((start, start + st.layers))
            start += st.layers
        return out

    def min_depths(self) -> list[int]:
        return [self.min_depth(s) for s in range(len(self.stages))]

    def num_layers(self) -> int:
        return sum(s.layers for s in self.stages)


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv with this stride."""
    return (size + stride - 1) // stride


# ---- loading ----------------------------------------------------------------------------------------------


def space_from_dict(data: Any, source: str = "<dict>") -> MBV2Space:
    """Build and validate a space from a plain mapping (as read from YAML); the schema is
    ``tfnas.config.schemas.MBV2SpaceFile``, errors name ``source`` and the key path."""
    from tfnas.config import validate
    from tfnas.config.schemas import MBV2SpaceFile

    d = validate(MBV2SpaceFile, data, source)

    def fail(key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{source}: key '{key}' = {value!r}: expected {expected}")

    stem, first = StemSpec(**d["stem"]), FirstBlockSpec(**d["first_block"])
    if first.mid != stem.out:
        raise fail("first_block.mid", first.mid, f"equal to stem.out ({stem.out}): the first block has no expansion")
    width = WidthRule(**d["width"])
    ops = {}
    for name, spec in d["ops"].items():
        op = OpSpec(name=name, **spec)
        if op.expansion not in width.bound_factor:
            raise fail(
                f"ops.{name}.expansion",
                op.expansion,
                f"an expansion listed in width.bound_factor {sorted(width.bound_factor)}",
            )
        if op.se and op.expansion not in width.se_factor:
            raise fail(
                f"ops.{name}.expansion",
                op.expansion,
                f"an expansion listed in width.se_factor {sorted(width.se_factor)}",
            )
        ops[name] = op
    space = MBV2Space(
        d["name"],
        d["input"]["resolution"],
        d["input"]["channels"],
        d["num_classes"],
        stem,
        first,
        tuple(StageSpec(**st) for st in d["stages"]),
        HeadSpec(**d["head"]),
        ops,
        width,
        source,
    )
    if space.final_size() < 1:
        raise fail("input.resolution", space.resolution, "large enough for all downsamplings")
    return space


def spaces_dir() -> Path:
    return shipped_dir("configs/spaces")


def available_spaces() -> list[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def load_space(name_or_path: str | Path) -> MBV2Space:
    """Load a space by registered name (``configs/spaces/<name>.yaml``) or by YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = spaces_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown search space {str(name_or_path)!r}; available: {', '.join(available_spaces())}"
                " (or pass a path to a space YAML file)"
            )
    data = read_yaml(path, "search-space file")
    space = space_from_dict(data, str(path))
    return space
