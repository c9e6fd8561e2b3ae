"""ONNX Runtime CPU backend.

Session options (they are part of the fingerprint, see ``session_settings``):

- ``CPUExecutionProvider`` only;
- ``intra_op_num_threads = threads`` (the LUT's thread count), ``inter_op_num_threads = 1``
  and ``ExecutionMode.ORT_SEQUENTIAL``: one op at a time, like a deployed single stream;
- ``GraphOptimizationLevel.ORT_ENABLE_ALL``: the fusions a deployment gets (Conv+BN+act);
- ``log_severity_level = 3`` (errors only).

The closure runs through an ``IOBinding`` with the input bound once and outputs
pre-allocated when their shapes are static, so per-call Python overhead is minimal.

``precision="int8"`` times statically quantized graphs (``profilers.quantize``, ONNX Runtime's
QDQ format): a graph that is already quantized (Q/DQ nodes) is timed as it is, an fp32 graph is
quantized first with ``quantization`` (the recipe an INT8 table records in its fingerprint;
default: this machine's, ``profilers.quantize.default_settings``) and generated calibration tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profilers.backends.base import Backend
from profilers.errors import ProfilerError
from profilers.quantize import QuantSettings, as_settings, is_quantized_file, quantize_graph

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OrtBackend(Backend):
    """ONNX Runtime on CPU with a fixed thread count."""

    name = "ort"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "int8")

    def __init__(
        self, threads: int = 1, precision: str = "fp32", quantization: QuantSettings | dict | None = None
    ) -> None:
        super().__init__(threads, precision)
        try:
            import onnxruntime
        except ImportError:
            raise ProfilerError("onnxruntime is not installed; `pip install onnxruntime`") from None
        self._ort = onnxruntime
        self.quantization: QuantSettings | None = as_settings(quantization) if precision == "int8" else None

    def session_settings(self) -> dict[str, Any]:
        return {
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
        }

    def fingerprint_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "runtime": "onnxruntime",
            "runtime_version": str(self._ort.__version__),
            "provider": self.provider,
            "session_options": self.session_settings(),
        }
        if self.quantization is not None:
            fields["quantization"] = self.quantization.to_dict()
        return fields

    def _session_options(self) -> Any:
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return so

    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        path = Path(onnx_path)
        if self.quantization is not None and not is_quantized_file(path):
            import tempfile

            with tempfile.TemporaryDirectory(prefix="tfnas-int8-") as tmp:  # the session keeps what it needs
                qpath = quantize_graph(path, input_shape, Path(tmp) / path.name, self.quantization)
                return self._prepare(qpath, input_shape)
        return self._prepare(path, input_shape)

    def _prepare(self, path: Path, input_shape: Sequence[int]) -> Callable[[], None]:
        try:
            sess = self._ort.InferenceSession(str(path), self._session_options(), providers=[self.provider])
        except Exception as exc:  # onnxruntime raises several private exception types
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProfilerError(f"cannot load graph {path}: {msg}") from None
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise ProfilerError(f"graph {path}: expected exactly one input, found {[i.name for i in inputs]}")
        inp = inputs[0]
        dtype = _DTYPES.get(inp.type)
        if dtype is None:
            raise ProfilerError(f"graph {path}: input {inp.name!r} has type {inp.type}; expected a float tensor")
        shape = tuple(int(d) for d in input_shape)
        declared = inp.shape
        if len(declared) != len(shape) or any(
            isinstance(d, int) and d != s for d, s in zip(declared, shape, strict=False)
        ):
            raise ProfilerError(f"graph {path}: input shape {declared} does not match the manifest's {list(shape)}")
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(dtype)
        binding = sess.io_binding()
        binding.bind_cpu_input(inp.name, x)
        keep: list[Any] = [x]
        for out in sess.get_outputs():
            odt = _DTYPES.get(out.type)
            if odt is not None and all(isinstance(d, int) and d > 0 for d in out.shape):
                buf = self._ort.OrtValue.ortvalue_from_numpy(np.empty(out.shape, dtype=odt))
                keep.append(buf)
                binding.bind_ortvalue_output(out.name, buf)
            else:
                binding.bind_output(out.name, "cpu")
        try:
            sess.run_with_iobinding(binding)  # first run: surfaces shape/kernel errors before timing
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProfilerError(f"graph {path} failed to run with input shape {list(shape)}: {msg}") from None

        run = sess.run_with_iobinding

        def run_once() -> None:
            run(binding)

        run_once.keepalive = (sess, binding, keep)  # type: ignore[attr-defined]
        return run_once
