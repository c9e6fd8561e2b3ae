"""Readable op signatures: the keys of a latency table.

A key names everything that changes an op's latency except its mid width and
the batch (the batch, precision and runtime live in the table's fingerprint)::

    ir|k3_e6_se|in24_out40|s2|56x56|swish     searchable layer (width varies)
    stem|k3|in3_out32|s2|224x224|relu          fixed parts (width None)
    first|k3_e1_se|in32_out16|s1|112x112|relu
    head|in320_out1280|7x7|swish|cls1000

Keys use the *deployment* resolution, never the proxy resolution a supernet trains at.

What an MBV2 space needs of a table is here too (``SpaceNeeds``, ``open_space_table``):
``tfnas.latency.table.open_table`` knows no family and checks a table against the entries the space names:
both ends of every op's width range (the lookups interpolate in between).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from profilers.lut import LatencyTable
from tfnas.latency.table import Width, open_table
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_first_block, build_head, build_layer, build_stem
from tfnas.mbv2.space import LayerGeometry, MBV2Space, conv_out_size, load_space


@dataclass(frozen=True)
class Signature:
    """One profiled op: its key, what builds it, its input shape and its width range."""

    key: str
    kind: str  # "layer" | "stem" | "first" | "head"
    in_ch: int
    in_size: int
    op: str | None = None
    geometry: LayerGeometry | None = None
    width_range: tuple[int, int] | None = None  # inclusive, for layers

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.in_ch, self.in_size, self.in_size)


def layer_key(space: MBV2Space, g: LayerGeometry, op: str) -> str:
    spec = space.ops[op]
    se = "_se" if spec.se else ""
    return (
        f"ir|k{spec.kernel}_e{spec.expansion}{se}|in{g.in_ch}_out{g.out_ch}|s{g.stride}|{g.in_size}x{g.in_size}|{g.act}"
    )


def fixed_signatures(space: MBV2Space, resolution: int | None = None) -> dict[str, Signature]:
    """The parts every architecture runs: stem, first block, head."""
    res = resolution or space.resolution
    st, fb = space.stem, space.first_block
    stem_out = conv_out_size(res, st.stride)
    final = space.final_size(res)
    se = "_se" if fb.se else ""
    last = space.stages[-1].out
    return {
        "stem": Signature(
            f"stem|k{st.kernel}|in{space.in_channels}_out{st.out}|s{st.stride}|{res}x{res}|{st.act}",
            "stem",
            space.in_channels,
            res,
        ),
        "first": Signature(
            f"first|k{fb.kernel}_e1{se}|in{st.out}_out{fb.out}|s{fb.stride}|{stem_out}x{stem_out}|{fb.act}",
            "first",
            st.out,
            stem_out,
        ),
        "head": Signature(
            f"head|in{last}_out{space.head.out}|{final}x{final}|{space.head.act}|cls{space.num_classes}",
            "head",
            last,
            final,
        ),
    }


def layer_signature(space: MBV2Space, g: LayerGeometry, op: str) -> Signature:
    return Signature(layer_key(space, g, op), "layer", g.in_ch, g.in_size, op, g, space.width_bounds(op, g.in_ch))


def space_signatures(space: MBV2Space, resolution: int | None = None) -> list[Signature]:
    """Every unique signature an architecture of the space can produce, fixed parts first."""
    out = dict((s.key, s) for s in fixed_signatures(space, resolution).values())
    for g in space.layers(resolution):
        for op in space.ops:
            sig = layer_signature(space, g, op)
            out.setdefault(sig.key, sig)
    return list(out.values())


def arch_entries(arch: Architecture) -> list[tuple[str, int | None]]:
    """The (key, width) pairs whose latencies add up to the architecture's latency."""
    fixed = fixed_signatures(arch.space, arch.resolution)
    entries: list[tuple[str, int | None]] = [(fixed["stem"].key, None), (fixed["first"].key, None)]
    entries += [(layer_key(arch.space, g, c.op), c.width) for g, c in arch.active_layers()]
    entries.append((fixed["head"].key, None))
    return entries


def layer_weights(space: MBV2Space, g: LayerGeometry, op: str, width: int) -> int:
    """Conv weights of a searchable layer at mid ``width`` (the bytes a network streams per inference).

    Per-op graphs are timed with their weights hot in cache; a whole network
    streams every layer's weights through the cache hierarchy once per
    inference, a cost that grows with the weight count (see ``calibrate``).
    """
    spec = space.ops[op]
    se = space.se_width(op, g.in_ch)
    return width * (g.in_ch + spec.kernel * spec.kernel + g.out_ch + 2 * se)


def arch_mweights(arch: Architecture, runtime_width: Callable[[int], int] = int) -> float:
    """Millions of conv weights over the architecture's active searchable layers.

    ``runtime_width`` maps a mid width to the one the runtime allocates (``WidthGrid.runtime_width``:
    ONNX Runtime pads aligned widths to its SIMD block, and streams the padding too).
    """
    return sum(layer_weights(arch.space, g, c.op, runtime_width(c.width)) for g, c in arch.active_layers()) / 1e6


def build_signature_module(space: MBV2Space, sig: Signature, width: int | None) -> nn.Module:
    """The exact module a derived network runs for this signature (used for profiling graphs)."""
    if sig.kind == "stem":
        return build_stem(space)
    if sig.kind == "first":
        return build_first_block(space)
    if sig.kind == "head":
        return build_head(space)
    g = sig.geometry
    assert g is not None and sig.op is not None and width is not None
    return build_layer(space, g.in_ch, g.out_ch, g.stride, g.act, sig.op, width)


# ---- what an MBV2 space needs of a latency table ----
def required_entries(space: MBV2Space, resolution: int | None = None) -> list[tuple[str, Width]]:
    """(key, width) pairs a table must answer for every architecture of ``space``: range ends of each op."""
    out: list[tuple[str, Width]] = []
    for sig in space_signatures(space, resolution):
        if sig.width_range is None:
            out.append((sig.key, None))
        else:
            out += [(sig.key, sig.width_range[0]), (sig.key, sig.width_range[1])]
    return out


def missing_entries(table: LatencyTable, space: MBV2Space, resolution: int | None = None) -> list[tuple[str, Width]]:
    return table.missing(required_entries(space, resolution))


@dataclass(frozen=True)
class SpaceNeeds:
    """``TableNeeds`` of an MBV2 space."""

    space: MBV2Space

    @property
    def name(self) -> str:
        return self.space.name

    def required_entries(self, resolution: int | None) -> list[tuple[str, Width]]:
        return required_entries(self.space, resolution)


def open_space_table(
    name_or_path: str | Path, space: MBV2Space | str | None = None, **checks: Any
) -> tuple[LatencyTable, MBV2Space]:
    """``open_table`` checked against ``space`` (a space, its name or YAML; None: the space the table was
    profiled for), and that space. ``checks``: ``open_table``'s keywords."""
    chosen: list[MBV2Space] = []

    def needs(table: LatencyTable) -> SpaceNeeds:
        chosen.append(space if isinstance(space, MBV2Space) else load_space(space or table.space))
        return SpaceNeeds(chosen[0])

    table = open_table(name_or_path, needs, **checks)
    return table, chosen[0]
