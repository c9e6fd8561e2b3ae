"""Latency keys and profiling bundles for DARTS cell ops at a deployment shape.

The search may train a small proxy supernet (8 cells, C=16), but the latency
term must describe the network that will be deployed (e.g. CIFAR C=36, 20
cells, batch 1). ``deploy_positions`` walks that network and lists, per cell,
its type, alpha set, channels, input resolution and the edges' strides (from the
one ``cell_plan`` the supernet and the evaluation network are built from); every
(op, C, stride, H) it meets becomes one key, measured once by the profilers.
Keys are readable: ``darts/sep_conv_3x3/c36/s1/h32``. Fixed parts (stem, cell
preprocessing, classifier) get keys too so the total is a whole-network estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from profilers.bundle import MANIFEST_NAME, manifest_document
from tfnas.errors import ConfigError
from tfnas.ops.darts_ops import FactorizedReduce, ReLUConvBN, build_op
from tfnas.spaces.darts import NUM_NODES, CellPlan, CellSpace, cell_plan
from tfnas.utils.io import atomic_write_json


@dataclass(frozen=True)
class DeployShape:
    """The deployed network the latency term describes (DARTS CIFAR-style macro network)."""

    C: int = 36
    num_cells: int = 20
    resolution: int = 32
    batch: int = 1
    in_channels: int = 3
    num_classes: int = 10
    stem_multiplier: int = 3

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DeployShape:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"latency.deploy: unknown keys {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in d.items()})


Outputs = Callable[[bool, int], int]  # (reduction, alpha set) -> nodes a cell concatenates


def deploy_positions(shape: DeployShape, outputs: Outputs | None = None) -> list[CellPlan]:
    """The deployed network's cells (``tfnas.spaces.darts.cell_plan``: the supernet and eval net use it too).

    ``outputs``: a genotype's concatenation sizes (Fair DARTS cells may concatenate fewer than 4 nodes,
    which narrows the next cells' preprocessing); default all nodes, as the supernet has.
    """
    return cell_plan(shape.C, shape.num_cells, shape.stem_multiplier, shape.resolution, outputs=outputs)


def op_key(op: str, C: int, stride: int, H: int) -> str:
    return f"darts/{op}/c{C}/s{stride}/h{H}"


def fixed_keys(
    shape: DeployShape, outputs: Outputs | None = None
) -> list[tuple[str, nn.Module, tuple[int, int, int, int]]]:
    """(key, module, input shape) of the parts every architecture pays for (stem, preprocessing, head);
    the preprocessing and head widths follow the cells' concatenation sizes (``outputs``)."""
    b, out = shape.batch, []
    c_stem = shape.stem_multiplier * shape.C
    stem = nn.Sequential(nn.Conv2d(shape.in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
    out.append((f"darts/stem/cin{shape.in_channels}/c{c_stem}/h{shape.resolution}", stem,
                (b, shape.in_channels, shape.resolution, shape.resolution)))  # fmt: skip
    H = shape.resolution
    plan = deploy_positions(shape, outputs)
    for pos in plan:
        h0 = pos.H_in * 2 if pos.reduction_prev else pos.H_in
        if pos.reduction_prev:
            out.append((f"darts/pre_fr/cin{pos.C_pp}/c{pos.C}/h{h0}", FactorizedReduce(pos.C_pp, pos.C),
                        (b, pos.C_pp, h0, h0)))  # fmt: skip
        else:
            out.append((f"darts/pre_rcb/cin{pos.C_pp}/c{pos.C}/h{h0}", ReLUConvBN(pos.C_pp, pos.C, 1, 1, 0),
                        (b, pos.C_pp, h0, h0)))  # fmt: skip
        out.append((f"darts/pre_rcb/cin{pos.C_p}/c{pos.C}/h{pos.H_in}", ReLUConvBN(pos.C_p, pos.C, 1, 1, 0),
                    (b, pos.C_p, pos.H_in, pos.H_in)))  # fmt: skip
        H = pos.H_in // 2 if pos.reduction else pos.H_in
    c_last = plan[-1].C_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_last, shape.num_classes))
    out.append((f"darts/head/c{c_last}/h{H}/k{shape.num_classes}", head, (b, c_last, H, H)))
    uniq: dict[str, tuple[str, nn.Module, tuple[int, int, int, int]]] = {}
    for item in out:
        uniq.setdefault(item[0], item)
    return list(uniq.values())


def op_entries(space: CellSpace, shape: DeployShape) -> dict[str, tuple[str, int, int, int]]:
    """key -> (op, C, stride, H) for every candidate op at every deployed edge (``none`` excluded)."""
    keys: dict[str, tuple[str, int, int, int]] = {}
    for pos in deploy_positions(shape):
        edges = space.ops("reduce" if pos.reduction else "normal")
        for e, ops in enumerate(edges):
            s, h = pos.edge_stride(e), pos.edge_resolution(e)
            for op in ops:
                if op != "none":
                    keys.setdefault(op_key(op, pos.C, s, h), (op, pos.C, s, h))
    return keys


def write_darts_bundle(space: CellSpace, shape: DeployShape, out_dir: str | Path, opset: int = 17) -> Path:
    """Export every cell op and fixed part as a small ONNX graph + ``manifest.json``."""
    from tfnas.export.onnx import export_onnx

    out_dir = Path(out_dir)
    (out_dir / "graphs").mkdir(parents=True, exist_ok=True)
    entries = []

    def add(key: str, module: nn.Module, input_shape: tuple[int, int, int, int]) -> None:
        file = f"graphs/{key.replace('/', '_')}.onnx"
        export_onnx(module.eval(), out_dir / file, input_shape, opset=opset)
        entries.append({"key": key, "width": None, "file": file, "input_shape": list(input_shape)})

    for key, (op, C, stride, H) in sorted(op_entries(space, shape).items()):
        if op == "noise":  # random output: its cost is not architecture-dependent work worth timing
            continue
        add(key, build_op(op, C, stride, affine=True), (shape.batch, C, H, H))
    # every concatenation size a derived cell may have (Fair DARTS keeps 0-2 inputs per node)
    fixed = {key: (key, m, s) for k in range(1, NUM_NODES + 1) for key, m, s in fixed_keys(shape, lambda r, a, k=k: k)}
    for key, module, input_shape in fixed.values():
        add(key, module, input_shape)
    meta = {"deploy": shape.__dict__, "space_ops": space.to_dict()}
    manifest = manifest_document(
        f"darts-{space.name}", shape.batch, shape.resolution, entries, meta, weights="embedded"
    )
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    return out_dir
