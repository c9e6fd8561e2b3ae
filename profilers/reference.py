"""The reference network: a fixed small ONNX graph timed beside every end-to-end measurement.

Why: these hosts have slow spells of seconds at 1.3-1.45x and are often shared, so the time of one
network at one moment says as much about the host as about the network. A spell or a busy neighbour
slows the reference timed back to back with a candidate as well; the candidate's time *in units of
the reference* does not move (``profilers.drift``). Multiplied by the reference's quiet time on this
device (recorded with a table when it is profiled or calibrated), it gives a drift-cancelled figure.

The graph is a MobileNetV2-like stack (a strided stem conv, three inverted residual blocks with 3x3
and 5x5 depthwise convs, pooling and a classifier) at 1 x 3 x 96 x 96, so it exercises the kernels a
searched network runs. It is built here from seeded numpy weights: the same bytes on every machine,
no torch, and a name (``REFERENCE_NAME``) that changes whenever the graph does, so a stored reference
time is never compared with another graph's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from profilers.errors import ProfilerError

REFERENCE_NAME = "tfnas-ref-mbconv-v1"
REFERENCE_SHAPE = (1, 3, 96, 96)
_OPSET = 17
# (expand channels, depthwise kernel, stride, output channels) of the inverted residual blocks
_BLOCKS = ((96, 3, 2, 32), (128, 5, 1, 48), (192, 3, 2, 64))
_STEM = 32
_CLASSES = 10


class _Graph:
    """Collects nodes and initializers of the reference graph (names are generated, weights seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        from onnx import numpy_helper

        name = self._name("w")
        value = (self.rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> str:
        from onnx import helper

        w = self.weight((cout, cin // groups, k, k), cin // groups * k * k)
        b = self.weight((cout,), cout)
        y = self._name("conv")
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups
            )
        )
        if not relu:
            return y
        z = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [y], [z]))
        return z

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        y = self._name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [y], **attrs))
        return y


def reference_model() -> Any:
    """The reference network as an ``onnx.ModelProto`` (deterministic: same weights on every call)."""
    from onnx import TensorProto, checker, helper

    g = _Graph(seed=0)
    x = g.conv("input", REFERENCE_SHAPE[1], _STEM, 3, stride=2)
    cin = _STEM
    for expand, k, stride, cout in _BLOCKS:
        h = g.conv(x, cin, expand, 1)
        h = g.conv(h, expand, expand, k, stride=stride, groups=expand)
        h = g.conv(h, expand, cout, 1, relu=False)
        x, cin = (g.op("Add", [x, h]) if stride == 1 and cin == cout else h), cout
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    w = g.weight((_CLASSES, cin), cin)
    b = g.weight((_CLASSES,), cin)
    logits = g.op("Gemm", [pooled, w, b], transB=1)
    graph = helper.make_graph(
        g.nodes,
        REFERENCE_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(REFERENCE_SHAPE))],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [REFERENCE_SHAPE[0], _CLASSES])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="tfnas")
    model.ir_version = 8  # readable by every onnxruntime this project supports
    checker.check_model(model)
    return model


def write_reference(folder: str | Path) -> Path:
    """Write the reference graph as ``<folder>/<REFERENCE_NAME>.onnx`` (reused when it is already there)."""
    import onnx

    path = Path(folder) / f"{REFERENCE_NAME}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".onnx.tmp")
        onnx.save(reference_model(), str(tmp))
        tmp.replace(path)
    return path


def reference_name(precision: str = "fp32") -> str:
    """The reference's name at a precision: a table records the reference of its own precision."""
    return REFERENCE_NAME if precision == "fp32" else f"{REFERENCE_NAME}-{precision}"


def reference_timer(backend: Any, folder: str | Path) -> Any:
    """A zero-argument callable running the reference once on a prepared ``profilers`` backend.

    The backend carries the candidate's thread count and precision: an int8 backend quantizes the reference with
    the candidate's recipe. Slow spells hit int8 kernels harder than fp32 ones (1.32x for an int8 network while
    the fp32 reference was 1.13x, and the int8 reference 1.33x: benchmarks/latency/README.md, issue 24), so
    only a reference of the candidate's own precision cancels them."""
    return backend.prepare(write_reference(folder), REFERENCE_SHAPE)


def validate_reference(source: str, ref: Any) -> dict[str, Any] | None:
    """``None`` or a table's ``reference`` record: ``{"name": str, "ms": > 0, "statistic": str, ...}``."""
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise ProfilerError(f"{source}: 'reference' must be an object, got {ref!r}")
    if not isinstance(ref.get("name"), str) or not ref["name"]:
        raise ProfilerError(f"{source}: reference.name={ref.get('name')!r}; expected the reference network's name")
    ms = ref.get("ms")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms <= 0:
        raise ProfilerError(f"{source}: reference.ms={ms!r}; expected a finite number > 0")
    if not isinstance(ref.get("statistic"), str):
        raise ProfilerError(f"{source}: reference.statistic={ref.get('statistic')!r}; expected a statistic name")
    n = ref.get("timings", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ProfilerError(f"{source}: reference.timings={n!r}; expected the count of timings it rests on (>= 0)")
    return dict(ref)


def reference_record(
    ms: float, threads: int, backend: str, how: str, statistic: str, precision: str = "fp32", timings: int = 0
) -> dict[str, Any]:
    """What a table stores about the reference (its ``reference`` field): name (of the precision timed),
    typical time, statistic, threads, backend, when, how it was found, and how many timings it rests on (a
    record of minutes stands where a measurement of seconds sees the host faster: ``profilers.drift``)."""
    import time

    return {
        "name": reference_name(precision), "ms": float(ms), "statistic": statistic, "threads": int(threads),
        "backend": backend, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "how": how,
        "timings": int(timings),
    }  # fmt: skip
