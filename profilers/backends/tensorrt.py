"""TensorRT GPU backend (imports ``tensorrt`` and ``cuda-python`` lazily).

Written against the TensorRT 10.x Python API (``docs.nvidia.com/deeplearning/tensorrt``,
Python API reference: Builder, IBuilderConfig, OnnxParser, ICudaEngine,
IExecutionContext; and the 8.x -> 10.x migration guide's name-based tensor API):

- ``trt.Builder(logger).create_network(flags)``: networks are always explicit-batch in
  10.x (``EXPLICIT_BATCH`` is deprecated and ignored); on 8.x we still pass it;
- ``trt.OnnxParser(network, logger).parse_from_file(path)`` with ``num_errors``/``get_error``;
- ``config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes)`` and
  ``config.set_flag(trt.BuilderFlag.FP16)`` for fp16;
- ``builder.build_serialized_network(network, config)`` -> ``trt.Runtime.deserialize_cuda_engine``;
- I/O by name: ``engine.num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``
  (``trt.TensorIOMode.INPUT``), ``get_tensor_dtype``; ``context.set_input_shape``,
  ``context.get_tensor_shape``, ``context.set_tensor_address``,
  ``context.execute_async_v3(stream_handle)``.

CUDA memory and streams come from cuda-python's runtime bindings
(``cuda.bindings.runtime``, or ``cuda.cudart`` in cuda-python < 12.6): ``cudaMalloc``,
``cudaMemcpy``, ``cudaStreamCreate``, ``cudaStreamSynchronize``; every call returns
``(err, *values)``. The timed closure enqueues the engine and synchronises the
stream, so a sample is host wall time of one complete inference (launch included).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profilers.backends.base import Backend
from profilers.errors import ProfilerError

_NOT_INSTALLED = "tensorrt is not installed; install the tensorrt extra on the GPU machine"


def _cuda_version(v: int) -> str:
    """CUDA encodes versions as 1000 * major + 10 * minor."""
    return f"{int(v) // 1000}.{int(v) % 1000 // 10}"


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise ProfilerError(_NOT_INSTALLED) from None
    return tensorrt


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise ProfilerError(
                "cuda-python is not installed (needed by the tensorrt backend for GPU buffers); "
                "install the tensorrt extra on the GPU machine"
            ) from None
    return cudart


class TensorRTBackend(Backend):
    """TensorRT engines built per graph, fp32 or fp16."""

    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def __init__(self, threads: int = 1, precision: str = "fp32", workspace_mb: int = 1024, device: int = 0) -> None:
        super().__init__(threads, precision)
        self._trt = _import_tensorrt()
        self._cudart = _import_cudart()
        self.workspace_mb = workspace_mb
        self.device = device
        self._check(self._cudart.cudaSetDevice(device), "cudaSetDevice")
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise ProfilerError(f"CUDA call {what} failed: {err}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def gpu_model(self) -> str:
        prop = self._check(self._cudart.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = prop.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)

    def fingerprint_fields(self) -> dict[str, Any]:
        """GPU identity (name, compute capability) and the versions that pick TensorRT's tactics."""
        prop = self._check(self._cudart.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        driver = self._check(self._cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
        runtime = self._check(self._cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
        return {
            "runtime": "tensorrt",
            "runtime_version": str(self._trt.__version__),
            "provider": "TensorRT",
            "gpu_model": self.gpu_model(),
            "gpu_name": self.gpu_model(),
            "gpu_compute_capability": f"{prop.major}.{prop.minor}",
            "gpu_memory_gb": round(int(prop.totalGlobalMem) / 2**30, 1),
            "gpu_driver": _cuda_version(driver),
            "cuda_version": _cuda_version(runtime),
            "tensorrt_version": str(self._trt.__version__),
            "workspace_mb": self.workspace_mb,
        }

    def _build_engine(self, path: Path) -> Any:
        trt = self._trt
        builder = trt.Builder(self._logger)
        flags = 0
        if int(str(trt.__version__).split(".")[0]) < 10:
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "unknown parser error"
            raise ProfilerError(f"cannot load graph {path}: TensorRT ONNX parser: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.precision == "fp16":
            if not builder.platform_has_fast_fp16:
                raise ProfilerError("precision fp16 requested but this GPU has no fast fp16")
            config.set_flag(trt.BuilderFlag.FP16)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ProfilerError(f"TensorRT could not build an engine for {path} (see the log above)")
        engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise ProfilerError(f"TensorRT could not deserialize the engine built for {path}")
        return engine

    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        trt, cudart = self._trt, self._cudart
        path = Path(onnx_path)
        engine = self._build_engine(path)
        context = engine.create_execution_context()
        stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        buffers: list[Any] = []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ProfilerError(f"graph {path}: expected exactly one input, found {inputs}")
        context.set_input_shape(inputs[0], tuple(int(d) for d in input_shape))
        rng = np.random.default_rng(0)
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            ptr = self._check(cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})")
            buffers.append(ptr)
            context.set_tensor_address(name, int(ptr))
            if name == inputs[0]:
                host = rng.standard_normal(shape).astype(dtype)
                self._check(
                    cudart.cudaMemcpy(ptr, host.ctypes.data, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                    "cudaMemcpy",
                )
        handle = int(stream)

        def run_once() -> None:
            if not context.execute_async_v3(handle):
                raise ProfilerError(f"TensorRT execution failed for {path}")
            self._check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

        def release(bufs: list[Any] = buffers, s: Any = stream) -> None:
            for b in bufs:
                cudart.cudaFree(b)
            cudart.cudaStreamDestroy(s)

        run_once.keepalive = (engine, context)  # type: ignore[attr-defined]
        weakref.finalize(run_once, release)
        run_once()  # surfaces execution errors before timing
        return run_once
