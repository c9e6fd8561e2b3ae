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


class _Reader:
    """Typed access to a YAML mapping whose errors name the file and the key path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{key}' = {value!r}: expected {expected}")

    def mapping(self, data: Any, key: str) -> dict:
        if not isinstance(data, dict):
            raise self.fail(key, data, "a mapping")
        return data

    def get(
        self,
        data: dict,
        key: str,
        path: str,
        kind: type,
        *,
        minimum: float | None = None,
        choices: tuple | None = None,
        default: Any = ...,
    ) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in data:
            if default is not ...:
                return default
            raise ConfigError(f"{self.source}: missing key '{full}'")
        value = data[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(full, value, f"a {kind.__name__}")
        if minimum is not None and value < minimum:
            raise self.fail(full, value, f">= {minimum}")
        if choices is not None and value not in choices:
            raise self.fail(full, value, f"one of {', '.join(map(str, choices))}")
        return value

    def unknown(self, data: dict, path: str, allowed: tuple[str, ...]) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            raise ConfigError(
                f"{self.source}: unknown key '{path + '.' if path else ''}{extra[0]}' (allowed: {', '.join(allowed)})"
            )


def space_from_dict(data: Any, source: str = "<dict>") -> MBV2Space:
    """Build and validate a space from a plain mapping (as read from YAML)."""
    r = _Reader(source)
    data = r.mapping(data, "<top level>")
    r.unknown(data, "", ("name", "input", "num_classes", "stem", "first_block", "stages", "head", "ops", "width"))
    name = r.get(data, "name", "", str)
    inp = r.mapping(r.get(data, "input", "", dict), "input")
    resolution = r.get(inp, "resolution", "input", int, minimum=8)
    channels = r.get(inp, "channels", "input", int, minimum=1, default=3)
    num_classes = r.get(data, "num_classes", "", int, minimum=1)

    st = r.get(data, "stem", "", dict)
    stem = StemSpec(
        out=r.get(st, "out", "stem", int, minimum=1),
        kernel=r.get(st, "kernel", "stem", int, choices=(1, 3, 5, 7)),
        stride=r.get(st, "stride", "stem", int, choices=(1, 2)),
        act=r.get(st, "act", "stem", str, choices=ACTIVATIONS),
    )
    fb = r.get(data, "first_block", "", dict)
    first = FirstBlockSpec(
        kernel=r.get(fb, "kernel", "first_block", int, choices=(3, 5, 7)),
        mid=r.get(fb, "mid", "first_block", int, minimum=1),
        out=r.get(fb, "out", "first_block", int, minimum=1),
        stride=r.get(fb, "stride", "first_block", int, choices=(1, 2)),
        se=r.get(fb, "se", "first_block", bool, default=False),
        act=r.get(fb, "act", "first_block", str, choices=ACTIVATIONS),
    )
    if first.mid != stem.out:
        raise r.fail("first_block.mid", first.mid, f"equal to stem.out ({stem.out}): the first block has no expansion")

    raw_stages = r.get(data, "stages", "", list)
    if not raw_stages:
        raise r.fail("stages", raw_stages, "a non-empty list of stages")
    stages = []
    for i, s in enumerate(raw_stages):
        path = f"stages[{i}]"
        s = r.mapping(s, path)
        r.unknown(s, path, ("layers", "out", "stride", "act"))
        stages.append(
            StageSpec(
                layers=r.get(s, "layers", path, int, minimum=1),
                out=r.get(s, "out", path, int, minimum=1),
                stride=r.get(s, "stride", path, int, choices=(1, 2)),
                act=r.get(s, "act", path, str, choices=ACTIVATIONS),
            )
        )

    hd = r.get(data, "head", "", dict)
    head = HeadSpec(
        out=r.get(hd, "out", "head", int, minimum=1),
        act=r.get(hd, "act", "head", str, choices=ACTIVATIONS),
        dropout=r.get(hd, "dropout", "head", float, minimum=0.0, default=0.0),
    )

    wd = r.get(data, "width", "", dict)
    bound_factor = {int(k): int(v) for k, v in r.mapping(r.get(wd, "bound_factor", "width", dict), "width").items()}
    se_factor = {int(k): int(v) for k, v in r.mapping(r.get(wd, "se_factor", "width", dict), "width").items()}
    min_fraction = r.get(wd, "min_fraction", "width", float)
    if not 0.0 < min_fraction <= 1.0:
        raise r.fail("width.min_fraction", min_fraction, "a number in (0, 1]")
    width = WidthRule(bound_factor, min_fraction, se_factor)

    raw_ops = r.get(data, "ops", "", dict)
    if not raw_ops:
        raise r.fail("ops", raw_ops, "a non-empty mapping of op name -> {kernel, expansion, se}")
    ops = {}
    for op_name, spec in raw_ops.items():
        path = f"ops.{op_name}"
        spec = r.mapping(spec, path)
        r.unknown(spec, path, ("kernel", "expansion", "se"))
        op = OpSpec(
            name=str(op_name),
            kernel=r.get(spec, "kernel", path, int, choices=(3, 5, 7)),
            expansion=r.get(spec, "expansion", path, int, minimum=1),
            se=r.get(spec, "se", path, bool, default=False),
        )
        if op.expansion not in bound_factor:
            raise r.fail(
                f"{path}.expansion", op.expansion, f"an expansion listed in width.bound_factor {sorted(bound_factor)}"
            )
        if op.se and op.expansion not in se_factor:
            raise r.fail(
                f"{path}.expansion", op.expansion, f"an expansion listed in width.se_factor {sorted(se_factor)}"
            )
        ops[op.name] = op

    space = MBV2Space(name, resolution, channels, num_classes, stem, first, tuple(stages), head, ops, width, source)
    if space.final_size() < 1:
        raise r.fail("input.resolution", resolution, "large enough for all downsamplings")
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
