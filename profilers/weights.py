"""Bundles without weights: the host strips them, the device generates them from a seed.

A bundle of the ImageNet space held 1203 graphs and 1.2 GB of weights. The values of
fp32 convolution weights do not change how long the runtime takes, only their
shapes do, so the host writes each large float initializer as a shape with a
marker instead of data (a bundle of a few MB) and the device fills it with seeded
normal values before the runtime sees the graph. Small initializers (biases,
shape constants, anything not float32) stay in the graph as they are.

A stripped initializer is an ONNX external-data reference to a location that never
exists (``GENERATED``), so a runtime given the raw file fails loudly instead of
timing a graph without weights.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from profilers.errors import ProfilerError

GENERATED = "tfnas:generated"
MIN_ELEMENTS = 256  # below this an initializer is kept (bias vectors, Reshape shapes: cheap, and some are semantic)
SCALE = 0.05  # weight values uniform with std 0.05: no denormals, no overflow through a deep stack


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ProfilerError(
            "this bundle's weights are generated on the device, which needs the onnx package: pip install onnx"
        ) from None
    return onnx


def strip_weights(model: Any) -> int:
    """Replace large float32 initializers of an ``onnx.ModelProto`` by generated-weight markers; return how many."""
    onnx = _onnx()
    keep = {name for node in model.graph.node if node.op_type == "BatchNormalization" for name in node.input[1:]}
    n = 0
    for init in model.graph.initializer:
        numel = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type != onnx.TensorProto.FLOAT or numel < MIN_ELEMENTS or init.name in keep:
            continue
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        entry = init.external_data.add()
        entry.key, entry.value = "location", GENERATED
        n += 1
    return n


def _is_generated(init: Any) -> bool:
    return any(e.key == "location" and e.value == GENERATED for e in init.external_data)


def fill_weights(model: Any, seed_text: str) -> int:
    """Give every generated-weight marker of ``model`` seeded values (the same for the same ``seed_text``)."""
    onnx = _onnx()
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    n = 0
    for init in model.graph.initializer:
        if not _is_generated(init):
            continue
        # uniform float32 in [-a, a], std SCALE: 5x cheaper than normals, and this runs for every graph and pass
        a = np.float32(SCALE * np.sqrt(3.0))
        values = rng.random(tuple(init.dims), dtype=np.float32) * (2 * a) - a
        del init.external_data[:]
        init.data_location = onnx.TensorProto.DEFAULT
        init.raw_data = values.tobytes()
        n += 1
    return n


def materialize(path: Path, workdir: Path) -> Path:
    """The graph at ``path`` with its generated weights filled in, written under ``workdir``."""
    onnx = _onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ProfilerError(f"cannot read graph {path}: {exc}") from None
    fill_weights(model, path.name)
    out = workdir / path.name
    onnx.save(model, str(out))
    return out
