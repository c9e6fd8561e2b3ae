"""Static INT8 quantization of ONNX graphs on the device, the way a deployment quantizes them.

An INT8 latency table times INT8 graphs: each fp32 bundle graph (weights generated on the
device, ``profilers.weights``) is quantized here with ONNX Runtime's own tools
(``onnxruntime.quantization.quantize_static``), then timed; ``tfnas`` quantizes a whole
exported network with the same settings (``QuantSettings``, recorded in the table's
fingerprint) before timing it end to end, and ``tfnas export --precision int8`` with
calibration tensors from the user's data. Nothing here imports torch or tfnas.

The recipe (``QuantSettings``), following ONNX Runtime's guidance for CPU inference:

- ``QuantFormat.QDQ`` (QuantizeLinear/DequantizeLinear pairs; ORT's CPU provider fuses them
  into QLinearConv, QGemm, QLinearSigmoid, QLinearMul, QLinearAdd, ...): the format ORT's
  CPU kernels are optimised for since 1.11;
- weights int8, symmetric, **per output channel** (depthwise convolutions have one range per
  channel; per-tensor ranges would waste most of the 8 bits on them);
- activations **uint8**, asymmetric (U8S8): ORT's x86 integer GEMM and convolution kernels
  (MLAS) compute u8 x s8; post-activation tensors (ReLU, swish) are mostly one-sided, which an
  asymmetric uint8 range covers without wasting a bit on a sign;
- ``reduce_range`` (7-bit weights) **on x86 without VNNI** (AVX2, AVX-512 without VNNI): those
  kernels multiply with VPMADDUBSW, which adds two u8 x s8 products into a saturating int16;
  with full-range weights that sum can overflow and clamp. VNNI (and ARM dot-product) kernels
  accumulate in int32 and need no reduction. The flag changes the weights' values, not the
  kernels, so it does not change latency; it is set from the device's ISA so that an exported
  model keeps its accuracy on the device the table describes.
- calibration: min/max over generated tensors (``calibration_samples``, seeded, like the
  weights), so a bundle carries no data. The values of integer tensors do not change how
  long the kernels take, so one tensor per bundle graph is enough; ``tfnas export`` calibrates
  on the user's images instead.

What stays fp32: ``ReduceMean`` (the squeeze of squeeze-and-excitation and the head's global
pooling) has no QDQ rule in ORT's quantizer, so it runs in fp32 between a DequantizeLinear and
a QuantizeLinear; the graph's input and output stay fp32 (one Q at the input, one DQ at the
output). Everything else of the MBConv space (Conv, depthwise Conv, Gemm, Sigmoid, Mul, Add;
ReLU is folded into the uint8 range) runs on ORT's integer kernels.

Before quantizing, ``prepare_model`` gives every initializer read through an ``Identity`` its
own copy: the PyTorch exporter deduplicates equal tensors (e.g. two all-zero folded BN biases)
behind an ``Identity``, and a Conv whose bias is not an initializer is left in fp32 by the
quantizer (measured: one k3_e6_se block 1.15 ms with it, 0.73 ms without).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from profilers.errors import ProfilerError
from tfnas_base.atomic import atomic_path
from tfnas_base.errors import UserError

PRECISIONS = ("fp32", "int8")
VNNI_FEATURES = frozenset({"avx512-vnni", "avx-vnni", "amx-int8"})
QUANTIZED_MARKERS = (b"QuantizeLinear", b"DequantizeLinear")


@dataclass(frozen=True)
class QuantSettings:
    """How a graph is quantized (recorded in an INT8 table's fingerprint as ``quantization``)."""

    format: str = "QDQ"
    activations: str = "uint8"  # asymmetric
    weights: str = "int8"  # symmetric
    per_channel: bool = True
    reduce_range: bool = True  # 7-bit weights: x86 without VNNI (see the module doc)
    calibration: str = "minmax"
    calibration_samples: int = 1  # generated tensors per bundle graph / exported network
    calibration_seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("format", self.format in ("QDQ", "QOperator")),
            ("activations", self.activations in ("uint8", "int8")),
            ("weights", self.weights in ("int8", "uint8")),
            ("calibration", self.calibration in ("minmax", "entropy", "percentile")),
            ("calibration_samples", isinstance(self.calibration_samples, int) and self.calibration_samples >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ProfilerError(f"quantization setting {name}={getattr(self, name)!r} is not supported")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> QuantSettings:
        """The settings a table recorded; unknown keys are an error (a newer recipe this code cannot repeat)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfilerError(f"quantization settings: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def describe(self) -> str:
        return (
            f"static {self.format}, {self.weights} weights per-{'channel' if self.per_channel else 'tensor'}"
            f"{' (7-bit, reduce_range)' if self.reduce_range else ''}, {self.activations} activations,"
            f" {self.calibration} calibration"
        )


def needs_reduce_range(cpu_isa: Sequence[str] | None, cpu_arch: str = "x86_64") -> bool:
    """True on x86 without VNNI, where U8S8 kernels accumulate in a saturating int16 (ORT's guidance)."""
    if cpu_arch not in ("x86_64", "amd64", "x86", "i686"):
        return False
    return not (VNNI_FEATURES & set(cpu_isa or ()))


def default_settings(fingerprint: Mapping[str, Any] | None = None, **overrides: Any) -> QuantSettings:
    """The recipe for a device (its ``cpu_isa`` decides ``reduce_range``); this machine's by default."""
    if fingerprint is None:
        from profilers.device import cpu_identity

        fingerprint = cpu_identity()
    reduce = needs_reduce_range(fingerprint.get("cpu_isa"), str(fingerprint.get("cpu_arch", "x86_64")))
    return QuantSettings(**{"reduce_range": reduce, **overrides})


def as_settings(value: QuantSettings | Mapping[str, Any] | None) -> QuantSettings:
    if isinstance(value, QuantSettings):
        return value
    return default_settings() if value is None else QuantSettings.from_dict(value)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ProfilerError(f"precision {precision!r} is not supported; choose from {', '.join(PRECISIONS)}")
    return precision


def _quantization() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as exc:
        raise ProfilerError(
            f"INT8 needs onnxruntime's quantization tools (onnxruntime.quantization): {exc};"
            " `pip install onnxruntime onnx`"
        ) from None
    return q


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ProfilerError("INT8 quantization needs the onnx package: pip install onnx") from None
    return onnx


# ---- calibration data -------------------------------------------------------------------------------------------


class _Reader:
    """A ``CalibrationDataReader`` over a list of input feeds (built lazily: onnxruntime is imported late)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __len__(self) -> int:  # ORT may ask
        return 0


def _reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    q = _quantization()

    class Reader(_Reader, q.CalibrationDataReader):
        pass

    return Reader(feeds)


def generated_calibration(
    shape: Sequence[int], samples: int = 1, seed_text: str = "", seed: int = 0
) -> list[np.ndarray]:
    """Seeded standard-normal tensors of ``shape`` (a normalised image; a block's input after its BN)."""
    rng = np.random.default_rng([zlib.crc32(seed_text.encode()), seed])
    return [rng.standard_normal(tuple(int(d) for d in shape), dtype=np.float32) for _ in range(samples)]


# ---- the graph --------------------------------------------------------------------------------------------------


def is_quantized_file(path: str | Path) -> bool:
    """Whether an ONNX file holds Q/DQ nodes (a byte scan: op types are stored as plain strings)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfilerError(f"cannot read graph {path}: {exc}") from None
    return all(m in data for m in QUANTIZED_MARKERS)


def prepare_model(model: Any) -> int:
    """Give each initializer read through an ``Identity`` its own copy (see the module doc); return how many."""
    onnx = _onnx()
    inits = {i.name: i for i in model.graph.initializer}
    keep, n = [], 0
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
            n += 1
        else:
            keep.append(node)
    if n:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return n


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer logs advice through the root logger on every call ("consider pre-processing")."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_model(
    model: Any,
    out: str | Path,
    calibration: Sequence[np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    settings: QuantSettings | None = None,
) -> Path:
    """Quantize an fp32 ``onnx.ModelProto`` (or a path) statically into ``out`` with ``settings``.

    ``calibration``: input tensors (for a one-input graph) or input feeds; their min/max set the
    activation ranges.
    """
    q = _quantization()
    onnx = _onnx()
    settings = settings or default_settings()
    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # protobuf errors
            raise ProfilerError(f"cannot read graph {model}: {exc}") from None
    prepare_model(model)
    names = [i.name for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    feeds = [dict(c) if isinstance(c, Mapping) else {names[0]: np.asarray(c, np.float32)} for c in calibration]
    if not feeds:
        raise ProfilerError("static quantization needs at least one calibration tensor")
    qtype = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    method = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[settings.calibration]
    out = Path(out)
    try:
        with _quiet_quantizer():
            q.quantize_static(
                model,
                str(out),
                _reader(feeds),
                quant_format=q.QuantFormat.QDQ if settings.format == "QDQ" else q.QuantFormat.QOperator,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=qtype[settings.activations],
                weight_type=qtype[settings.weights],
                calibrate_method=method,
                extra_options={"ActivationSymmetric": settings.activations == "int8", "WeightSymmetric": True},
            )
    except UserError:
        raise
    except Exception as exc:  # the quantizer raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ProfilerError(f"ONNX Runtime's quantizer failed on {out.name}: {type(exc).__name__}: {first}") from None
    return out


def quantize_graph(
    path: str | Path,
    input_shape: Sequence[int],
    out: str | Path,
    settings: QuantSettings | None = None,
    seed_text: str | None = None,
) -> Path:
    """Quantize the fp32 graph at ``path`` into ``out`` with generated calibration tensors of ``input_shape``."""
    settings = settings or default_settings()
    path = Path(path)
    data = generated_calibration(
        input_shape, settings.calibration_samples, seed_text if seed_text is not None else path.name,
        settings.calibration_seed,
    )  # fmt: skip
    return quantize_model(path, out, data, settings)


def quantized_summary(path: str | Path) -> dict[str, Any]:
    """What a quantized graph holds: node counts by type, and initializers by data type (tests, reports)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    dtypes: dict[str, int] = {}
    for init in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(init.data_type).lower()
        dtypes[name] = dtypes.get(name, 0) + 1
    return {"ops": ops, "initializers": dtypes}


# ---- many graphs (a bundle) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantJob:
    """One bundle graph to quantize: ``src`` (generated weights filled in first when ``generated``) -> ``out``."""

    src: str
    input_shape: tuple[int, ...]
    out: str
    generated: bool


def _run_job(job: QuantJob, settings: dict[str, Any]) -> str:
    """Quantize one bundle graph (a worker's task; the fp32 graph with its weights never touches the disk)."""
    onnx = _onnx()
    src = Path(job.src)
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as exc:  # protobuf errors
        raise ProfilerError(f"cannot read graph {src}: {exc}") from None
    if job.generated:
        from profilers.weights import fill_weights

        fill_weights(model, src.name)  # the weights the fp32 table times (same seed: the file name)
    s = QuantSettings.from_dict(settings)
    data = generated_calibration(job.input_shape, s.calibration_samples, src.name, s.calibration_seed)
    with atomic_path(job.out, ".tmp.onnx") as tmp:  # a graph killed half-written must not look quantized
        quantize_model(model, tmp, data, s)
    return job.out


def default_workers() -> int:
    """Quantizing processes: the cores this process may use (nothing is timed while they run)."""
    from profilers.device import cpu_count

    return max(1, cpu_count())


def quantize_jobs(
    jobs: Sequence[QuantJob],
    settings: QuantSettings,
    workers: int | None = None,
    on_done: Any = None,
) -> None:
    """Quantize ``jobs`` in ``workers`` processes (1: in this process); ``on_done(job)`` after each.

    Quantizing is ORT's Python code (per-channel weight ranges are a Python loop per output
    channel: ~0.14 s for a typical ImageNet bundle graph on one AVX2 core), so a bundle is
    quantized in parallel before any timing starts, and never while a graph is being timed.
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    sdict = settings.to_dict()
    if workers == 1 or len(jobs) < 2 * workers:
        for job in jobs:
            _run_job(job, sdict)
            if on_done is not None:
                on_done(job)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: the host process (tfnas profile) may hold torch's OpenMP pool, which a forked child
    # must not touch; a worker imports only numpy, onnx and onnxruntime (~2 s, once).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending = {pool.submit(_run_job, job, sdict): job for job in jobs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    fut.result()  # re-raises a worker's ProfilerError
                    if on_done is not None:
                        on_done(job)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


STAMP = "quantization.json"


def claim_folder(folder: str | Path, settings: QuantSettings) -> Path:
    """A folder of quantized graphs made with ``settings`` (kept ones are reused; any made otherwise removed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / STAMP
    wanted = settings.to_dict()
    try:
        same = json.loads(stamp.read_text(encoding="utf-8")) == wanted
    except (OSError, ValueError):
        same = False
    if not same:
        for old in folder.glob("*.onnx"):
            old.unlink()
        stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return folder


class BackgroundQuantizer:
    """Quantizes graphs as their files appear, in one worker process (``tfnas profile`` runs it while the
    host is still exporting the bundle on the other core); ``stop`` finishes the graph in progress.

    A graph it did not reach (or failed on) is simply quantized later by the profiler's pre-pass.
    """

    def __init__(self, jobs: Sequence[QuantJob], settings: QuantSettings, poll_s: float = 0.02) -> None:
        self.jobs, self.settings, self.poll_s = list(jobs), settings, poll_s
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfnas-quantize", daemon=True)
        self._pool: Any = None

    def start(self) -> BackgroundQuantizer:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._thread.start()
        return self

    def _run(self) -> None:
        sdict = self.settings.to_dict()
        for job in self.jobs:
            while not Path(job.src).is_file():
                if self._stop.wait(self.poll_s):
                    return
            if self._stop.is_set():
                return
            if Path(job.out).is_file():
                continue
            try:
                self._pool.submit(_run_job, job, sdict).result()
                self.done += 1
            except Exception:  # left for the pre-pass, which reports errors with their context
                pass

    def stop(self) -> int:
        """Stop taking new graphs, wait for the one in progress; return how many were quantized."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return self.done
