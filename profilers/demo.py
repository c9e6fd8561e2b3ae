"""A tiny synthetic bundle (1x1 conv -> ReLU -> 1x1 conv per width) for tests and smoke checks.

Lets a device check its profiler set-up without the host: needs the ``onnx`` package.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from profilers.bundle import MANIFEST_NAME, manifest_document
from profilers.errors import ProfilerError


def conv_graph_bytes(channels: int, width: int, size: int, batch: int = 1, seed: int = 0) -> bytes:
    """Serialized ONNX model: [batch, channels, size, size] -> conv1x1(width) -> relu -> conv1x1(channels)."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ProfilerError("the demo bundle needs the onnx package: `pip install onnx`") from None
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((width, channels, 1, 1)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((channels, width, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    shape = [batch, channels, size, size]
    graph = helper.make_graph(
        nodes,
        "demo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def write_demo_bundle(
    folder: str | Path,
    keys: Sequence[tuple[str, int]] = (("conv|c4|8x8", 4), ("conv|c8|8x8", 8)),
    widths: Sequence[int] = (4, 8, 16),
    resolution: int = 8,
    batch: int = 1,
    fixed_key: str | None = "stem|c3|8x8",
) -> Path:
    """Write a bundle of ``len(keys) * len(widths)`` (+1 fixed) tiny graphs; return its folder."""
    root = Path(folder)
    (root / "graphs").mkdir(parents=True, exist_ok=True)
    entries = []
    n = 0
    plan: list[tuple[str, int | None, int, int]] = [(k, w, c, w) for k, c in keys for w in widths]
    if fixed_key is not None:
        plan.append((fixed_key, None, 3, 8))
    for key, width, channels, mid in plan:
        name = f"graphs/g{n:03d}.onnx"
        (root / name).write_bytes(conv_graph_bytes(channels, mid, resolution, batch, seed=n))
        entries.append(
            {"key": key, "width": width, "file": name, "input_shape": [batch, channels, resolution, resolution]}
        )
        n += 1
    manifest = manifest_document(
        "demo", batch, resolution, entries, meta={"generator": "profilers.demo"}, weights="embedded"
    )
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return root
