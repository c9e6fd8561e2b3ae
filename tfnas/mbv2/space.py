"""The TF-NAS MobileNetV2-style search space: its YAML file's schema *is* the space object.

The space is data (``configs/spaces/*.yaml``): a new resolution, stage layout or
op set needs a new YAML file, not new code. Loading checks every key, type and
range (``tfnas.config``) and the cross-field rules below; every error names the
file, the key and the offending value. Importable without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tfnas.config.loader import Schema, read_config, validate
from tfnas.errors import ConfigError
from tfnas.resources import shipped_dir

Activation = Literal["relu", "swish", "hswish"]


class SpaceInput(Schema):
    resolution: int = Field(ge=8)
    channels: int = Field(3, ge=1)


class StemSpec(Schema):
    out: int = Field(ge=1)
    kernel: Literal[1, 3, 5, 7]
    stride: Literal[1, 2]
    act: Activation


class FirstBlockSpec(Schema):
    kernel: Literal[3, 5, 7]
    mid: int = Field(ge=1)
    out: int = Field(ge=1)
    stride: Literal[1, 2]
    se: bool = False
    act: Activation


class StageSpec(Schema):
    layers: int = Field(ge=1)
    out: int = Field(ge=1)
    stride: Literal[1, 2]
    act: Activation


class HeadSpec(Schema):
    out: int = Field(ge=1)
    act: Activation
    dropout: float = Field(0.0, ge=0, lt=1)


class OpSpec(Schema):
    """A candidate op: an inverted residual block with kernel, expansion and SE."""

    kernel: Literal[3, 5, 7]
    expansion: int = Field(ge=1)
    se: bool = False


class WidthRule(Schema):
    bound_factor: dict[int, int] = Field(min_length=1)  # expansion -> mid-width bound factor
    min_fraction: float = Field(gt=0, le=1)
    se_factor: dict[int, int] = Field(default_factory=dict)  # expansion -> SE width factor

    @model_validator(mode="after")
    def _positive_factors(self) -> WidthRule:
        for name in ("bound_factor", "se_factor"):
            bad = {k: v for k, v in getattr(self, name).items() if k < 1 or v < 1}
            if bad:
                raise ValueError(f"{name} {bad}: expansions and factors must be integers >= 1")
        return self


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


class MBV2Space(Schema):
    """A MobileNetV2-style space with per-layer op choice, per-stage depth, per-op width."""

    name: str = Field(min_length=1)
    input: SpaceInput
    num_classes: int = Field(ge=1)
    stem: StemSpec
    first_block: FirstBlockSpec
    stages: tuple[StageSpec, ...] = Field(min_length=1)
    head: HeadSpec
    ops: dict[str, OpSpec] = Field(min_length=1)
    width: WidthRule
    source: str = Field("<memory>", exclude=True)  # the file it was read from (not part of the space)

    @model_validator(mode="before")
    @classmethod
    def _stages_as_tuple(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            data = {**data, "stages": tuple(data["stages"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MBV2Space:
        if self.first_block.mid != self.stem.out:
            raise ValueError(
                f"first_block.mid = {self.first_block.mid}: expected equal to stem.out ({self.stem.out}):"
                " the first block has no expansion"
            )
        for name, op in self.ops.items():
            for table in ("bound_factor",) + (("se_factor",) if op.se else ()):
                if op.expansion not in getattr(self.width, table):
                    raise ValueError(
                        f"ops.{name}.expansion = {op.expansion}: expected an expansion listed in width.{table}"
                        f" {sorted(getattr(self.width, table))}"
                    )
        if self.final_size() < 1:
            raise ValueError(f"input.resolution = {self.resolution}: too small for all downsamplings")
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MBV2Space) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def resolution(self) -> int:
        return self.input.resolution

    @property
    def in_channels(self) -> int:
        return self.input.channels

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
    """Build and validate a space from a plain mapping (as read from YAML); errors name ``source`` and the key."""
    return validate(MBV2Space, data, source).model_copy(update={"source": source})


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
    return space_from_dict(read_config(path, "search-space file"), str(path))
