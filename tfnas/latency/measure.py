"""Time networks end to end on a real runtime, with the profilers' timing protocol; knows no family.

A network is anything ``Network``-shaped (an input shape and a builder of its module); a family adapts its
own (``mbv2.measure.ArchNetwork``). Runtimes that take ONNX (``profilers.backends``: ort, tensorrt)
get the network exported exactly as ``tfnas export`` would; ``torch-cuda`` times the PyTorch module
directly with CUDA events (GPUs without TensorRT).

A backend's *preparer* turns a network into a timer (protocol -> Measurement) so several networks can be
timed in interleaved rounds: on a shared machine a burst of load then hits one round of one network instead
of all its samples.

Precision: with ``precision="int8"`` each exported network is quantized statically before it is timed
(``profilers.quantize``: ONNX Runtime's QDQ format, with the recipe ``quantization`` an INT8 table records in
its fingerprint, calibrated on generated tensors), exactly as the table's per-op graphs were;
``table_runtime`` reads all of that from a table, so timings that are compared with a table (calibrate,
validate, the search's closed loop) time what it describes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from profilers.backends import BACKENDS, get_backend
from profilers.drift import DriftCancelled, DriftSettings, measure_referenced, median_half_width
from profilers.drift import pool as pool_figures
from profilers.quantize import QuantSettings, check_precision, default_settings
from profilers.reference import reference_name, reference_timer
from profilers.timing import Measurement, TimingProtocol, measure, table_statistic
from tfnas.errors import TfnasError
from tfnas.latency.table import device_match, table_precision
from tfnas.registry import Registry
from tfnas_base.progress import progress as progress_bar

if TYPE_CHECKING:
    from torch import nn


class Network(Protocol):
    """What a runtime times: a network's input shape at a batch, and a builder of its (eval-mode) module."""

    def input_shape(self, batch: int) -> tuple[int, int, int, int]: ...

    def build(self) -> nn.Module: ...


Timer = Callable[[TimingProtocol], Measurement]

# End-to-end timing of one round: a fixed 20 runs (a low quantile needs no convergence of the median's CI),
# capped at 1 s for big networks; rounds, interleaved across networks, do the rest.
DEFAULT_PROTOCOL = TimingProtocol(
    warmup=3, min_repeats=20, max_repeats=20, floor_repeats=5, max_time_s=1.0, remeasure_attempts=0
)


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    """How a set of networks is timed: interleaved ``rounds`` (visited in an order drawn from ``seed``), each a
    ``protocol`` run (None: ``DEFAULT_PROTOCOL``, or the statistic of the table compared with), ``progress``."""

    rounds: int = 1
    seed: int = 0
    protocol: TimingProtocol | None = None
    progress: bool = False

    def with_protocol(self, protocol: TimingProtocol) -> TimingSettings:
        """These settings, with ``protocol`` where they name none."""
        return self if self.protocol is not None else dataclasses.replace(self, protocol=protocol)

    def bar(self, total: int):
        return progress_bar(total=total, desc="measure", enabled=None if self.progress else False, unit="run")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How networks are timed: backend, threads, batch, precision and (int8) the quantization recipe."""

    backend: str = "ort"
    threads: int = 1
    batch: int = 1
    precision: str = "fp32"
    quantization: QuantSettings | dict | None = None


def _backend_options(backend: str, threads: int, precision: str, quantization: QuantSettings | dict | None) -> dict:
    check_precision(precision)
    if precision == "fp32":
        return {"threads": threads}
    if backend != "ort":
        raise TfnasError(f"precision {precision} is timed with ONNX Runtime (backend ort), not {backend!r}")
    return {"threads": threads, "precision": precision, "quantization": quantization}


def onnx_timer(
    path: str | Path,
    shape: tuple[int, ...],
    backend: str = "ort",
    threads: int = 1,
    precision: str = "fp32",
    quantization: QuantSettings | dict | None = None,
) -> Timer:
    """A timer of an exported ONNX graph on a ``profilers`` backend (int8: an fp32 graph is quantized first,
    with generated calibration tensors; an already quantized graph is timed as it is)."""
    fn = get_backend(backend, **_backend_options(backend, threads, precision, quantization)).prepare(path, shape)
    return lambda protocol: measure(fn, protocol)


def export_network(net: Network, path: str | Path, batch: int = 1) -> Path:
    """Export ``net`` at its input shape for ``batch``, exactly as ``tfnas export`` would."""
    from tfnas.export.onnx import export_onnx

    return export_onnx(net.build().eval(), path, net.input_shape(batch))


def measure_onnx(
    path: str | Path,
    shape: tuple[int, ...],
    backend: str = "ort",
    threads: int = 1,
    protocol: TimingProtocol | None = None,
    precision: str = "fp32",
    quantization: QuantSettings | dict | None = None,
) -> Measurement:
    """End-to-end latency of an already exported ONNX graph (``tfnas export``, ``darts eval``)."""
    if backend not in BACKENDS:
        raise TfnasError(f"backend {backend!r} does not take ONNX; choose from {', '.join(BACKENDS)}")
    return onnx_timer(path, shape, backend, threads, precision, quantization)(protocol or DEFAULT_PROTOCOL)


# ---- preparers: (network, runtime, workdir) -> timer, one per backend ------------------------------------------
Preparer = Callable[[Network, Runtime, Path], Timer]
PREPARERS: Registry[Preparer] = Registry("timing backend")


def _prepare_onnx(net: Network, rt: Runtime, workdir: Path) -> Timer:
    path = export_network(net, workdir / "net.onnx", rt.batch)
    return onnx_timer(path, net.input_shape(rt.batch), rt.backend, rt.threads, rt.precision, rt.quantization)


for _name in BACKENDS:
    PREPARERS.add(_name, _prepare_onnx)


@PREPARERS.register("torch-cuda")
def _prepare_torch_cuda(net: Network, rt: Runtime, workdir: Path) -> Timer:
    from tfnas.latency.torch_cuda import measure_module, require_cuda

    if rt.precision != "fp32":
        raise TfnasError(f"backend torch-cuda times fp32 only, not {rt.precision}; use --backend ort for int8")
    require_cuda()
    model = net.build().eval().cuda()
    return lambda protocol: measure_module(model, net.input_shape(rt.batch), protocol)


def prepare_timer(net: Network, rt: Runtime, workdir: Path) -> Timer:
    """The timer of ``net`` on ``rt`` (the one place a network becomes a timer: tests replace it)."""
    return PREPARERS[rt.backend](net, rt, workdir)


def check_runtime(rt: Runtime) -> None:
    if rt.backend not in PREPARERS:
        raise TfnasError(f"unknown backend {rt.backend!r}; choose from {', '.join(PREPARERS)}")
    if rt.batch < 1 or rt.threads < 1:
        raise TfnasError(f"batch = {rt.batch}, threads = {rt.threads}: both must be integers >= 1")


# ---- plain interleaved rounds -----------------------------------------------------------------------------------
def measure_networks(
    nets: Sequence[Network], rt: Runtime, timing: TimingSettings = TimingSettings()
) -> list[list[Measurement]]:
    """Per network, one measurement per round; rounds visit the networks in shuffled order.

    ``rt.precision="int8"``: each exported network is quantized (``rt.quantization``: the recipe; default this
    machine's) before it is timed."""
    check_runtime(rt)
    with tempfile.TemporaryDirectory(prefix="tfnas-measure-") as tmp:
        timers = [prepare_timer(n, rt, Path(tmp) / str(i)) for i, n in enumerate(nets)]
        return interleave(timers, timing.with_protocol(DEFAULT_PROTOCOL))


def interleave(timers: Sequence[Timer], timing: TimingSettings) -> list[list[Measurement]]:
    """Per timer, one measurement per round; each round visits the timers in a new shuffled order, so a burst
    of load on a shared machine hits one round of one network instead of all samples of it."""
    results: list[list[Measurement]] = [[] for _ in timers]
    rng = random.Random(timing.seed)
    bar = timing.bar(len(timers) * timing.rounds)
    for _ in range(timing.rounds):
        order = list(range(len(timers)))
        rng.shuffle(order)
        for i in order:
            results[i].append(timers[i](timing.protocol or DEFAULT_PROTOCOL))
            bar.update()
    bar.close()
    return results


def round_latency(ms: Sequence[Measurement]) -> float:
    """The latency of several rounds: the median over rounds of each round's statistic (p10 by default)."""
    return float(statistics.median(m.latency_ms for m in ms))


def protocol_for(table_protocol: dict, base: TimingProtocol = DEFAULT_PROTOCOL) -> TimingProtocol:
    """End-to-end timing that reports the statistic a table's latencies are (so the two compare)."""
    return dataclasses.replace(base, statistic=table_statistic(table_protocol))


def table_quantization(table) -> QuantSettings | None:
    """The quantization recipe of an INT8 table (None for fp32): the one it recorded, else its device's default."""
    if table_precision(table) != "int8":
        return None
    recorded = table.fingerprint.get("quantization")
    return QuantSettings.from_dict(recorded) if recorded else default_settings(table.fingerprint)


def table_runtime(table, threads: int | None = None) -> Runtime:
    """How to time networks so they compare with ``table``: backend, threads, batch, precision, quantization."""
    fp = table.fingerprint
    backend = "ort" if fp.get("runtime") == "onnxruntime" else str(table.meta.get("backend", "ort"))
    return Runtime(
        backend, int(threads or fp.get("threads", 1)), int(fp.get("batch", 1)), table_precision(table),
        table_quantization(table),
    )  # fmt: skip


# Where a search's closed loop and closing figure time networks: a spawned process of their own (its own heap and
# threads). Measured (benchmarks/latency/README.md, issue 24): the process that had just run the README's search timed
# its network 3.4% slower (median over 273 alternating pairs; the small reference network 0.1%) than a fresh process
# at the same moments. Tests that fake the runtime in this process turn it off.
FRESH_PROCESS = True


def in_fresh_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a freshly spawned Python process (``FRESH_PROCESS``), its result sent back."""
    if not FRESH_PROCESS:
        return fn(*args, **kwargs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def measure_on_table_device(
    net: Network, table, rounds: int = 7, progress: bool = False, fresh_process: bool = False, measurements: int = 1
) -> dict | None:
    """Time ``net`` here with the table's runtime, shape, precision and statistic when this machine is the
    table's device (None otherwise: a timing here would say nothing about the budget). An INT8 table's
    network is quantized the way the table's graphs were before it is timed.

    Both figures are returned: ``raw_ms`` (median over rounds of each round's statistic) and the
    drift-cancelled ``cancelled_ms``; ``measured_ms`` is the drift-cancelled one (None when the host gave
    no clean rounds: ``note`` says so). ``fresh_process``: timed in a spawned process (``in_fresh_process``),
    a new one for each of ``measurements`` measurements, pooled (``profilers.drift.pool``)."""
    if not device_match(table).same_device:  # another device, or one that cannot be verified
        return None
    timing = TimingSettings(rounds, protocol=protocol_for(table.protocol), progress=progress)
    run = in_fresh_process if fresh_process else (lambda fn, *a, **k: fn(*a, **k))
    fig = pool_figures([run(measure_table_drift_cancelled, [net], table, timing)[0][0] for _ in range(measurements)])
    return {
        "measured_ms": fig.value_ms if fig.clean else None,
        "raw_ms": fig.raw_ms,
        "cancelled_ms": fig.cancelled_ms,
        "uncertainty_ms": fig.uncertainty_ms,
        "clean": fig.clean,
        "slow_state": fig.slow_state,
        "reference_ms": fig.reference_ms,
        "reference_now_ms": fig.reference_now_ms,
        "reference_source": fig.reference_source,
        "rounds_ms": [r.value for r in fig.rounds],
        "measurements_ms": fig.measurement_figures,
        "statistic": fig.method,
        "note": fig.describe(),
        "precision": table_precision(table),
    }


def time_fp32_and_int8(
    fp32_path: str | Path, int8_path: str | Path, shape: tuple[int, ...], threads: int = 1, rounds: int = 5
) -> dict[str, Any]:
    """An fp32 ONNX model and its int8 export timed here in interleaved rounds (median over rounds of each round's
    p10): ``tfnas export --precision int8``'s latency figures."""
    from profilers.device import describe_device
    from profilers.fingerprint import current_fingerprint

    timers = [
        onnx_timer(fp32_path, shape, "ort", threads),
        onnx_timer(int8_path, shape, "ort", threads, precision="int8"),  # already quantized: timed as it is
    ]
    runs = interleave(timers, TimingSettings(rounds, protocol=DEFAULT_PROTOCOL))
    fp32_ms, int8_ms = round_latency(runs[0]), round_latency(runs[1])
    fp = current_fingerprint(threads, batch=shape[0], resolution=shape[-1], precision="int8")
    return {
        "fp32_ms": fp32_ms,
        "int8_ms": int8_ms,
        "int8_over_fp32": int8_ms / fp32_ms,
        "statistic": f"median over {rounds} interleaved rounds of each round's {DEFAULT_PROTOCOL.statistic}",
        "device": describe_device(fp),
    }


# ---- drift-cancelled measurements (profilers.drift): every candidate timed between two reference timings ----


def reference_for(rt: Runtime, workdir: Path) -> Timer | None:
    """A timer of the reference network on ``rt``'s backend, threads and precision (int8: quantized with
    ``rt``'s recipe), or None where there is none (torch-cuda times PyTorch modules, not ONNX graphs)."""
    if rt.backend not in BACKENDS:
        return None
    options = _backend_options(rt.backend, rt.threads, rt.precision, rt.quantization)
    fn = reference_timer(get_backend(rt.backend, **options), workdir)
    return lambda protocol: measure(fn, protocol)


def table_reference_ms(table) -> float | None:
    """The reference's quiet time a table recorded on its device (None: none recorded, another reference
    network or precision, another thread count, or this machine is not the table's device)."""
    ref = getattr(table, "reference", None)
    if not ref or ref.get("name") != reference_name(table_precision(table)):
        return None
    if int(ref.get("threads", table.fingerprint.get("threads", 1))) != int(table.fingerprint.get("threads", 1)):
        return None
    return float(ref["ms"]) if device_match(table).same_device else None


def reference_record(ms: float, rt: Runtime, how: str, statistic: str, timings: int = 0) -> dict[str, Any]:
    """``profilers.reference.reference_record`` for a runtime."""
    from profilers.reference import reference_record as record

    return record(ms, rt.threads, rt.backend, how, statistic, rt.precision, timings)


# A table's reference record resting on this many timings (a profile and its calibration: minutes of the host)
# always stands; a shorter one (a quick validation's seconds) may have been taken in a slow spell.
LONG_RECORD_TIMINGS = 150
# Against such a record, a reference running more than this much slower throughout a measurement is a slow state
# the reference does not cancel (``profilers.drift.DriftSettings.slow_record``): spells are 1.3-1.5x, a host's
# ordinary moves within +/-10%.
SLOW_RECORD = 0.25


def long_record(table) -> bool:
    """Whether ``table``'s reference record rests on minutes of its host (a profile and its calibration)."""
    ref = getattr(table, "reference", None) or {}
    return int(ref.get("timings", 0)) >= LONG_RECORD_TIMINGS


def drift_settings_for(table, settings: DriftSettings | None = None) -> DriftSettings:
    """``settings`` for measurements converted with ``table``'s reference record: a record of minutes stands even
    when a measurement sees the reference lower, since such a host is in a fast moment, not the record in a
    spell (measured on an Intel AMX host: its fast state ran 1.25x its typical speed for tens of seconds, and
    converting with it put figures 20% below the network's typical time)."""
    settings = settings or DriftSettings()
    if not long_record(table):
        return settings
    return dataclasses.replace(settings, lower_reference=None, slow_record=SLOW_RECORD)


def _raw_only(runs: Sequence[Measurement], statistic: str) -> DriftCancelled:
    values = [m.latency_ms for m in runs]
    half = median_half_width(values)
    return DriftCancelled(
        raw_ms=float(statistics.median(values)), ratio=math.nan, reference_now_ms=math.nan, reference_ms=None,
        reference_source="none", cancelled_ms=None, uncertainty_ms=half if math.isfinite(half) else None,
        clean=True, steady_rounds=len(values), statistic=statistic,
    )  # fmt: skip


def measure_drift_cancelled(
    nets: Sequence[Network],
    rt: Runtime,
    timing: TimingSettings,
    reference_ms: float | None = None,
    reference_source: str = "table",
    settings: DriftSettings | None = None,
) -> tuple[list[DriftCancelled], float | None]:
    """Per network its raw and drift-cancelled latency, and the reference's quiet time seen (None without
    a reference). ``reference_ms`` None: converted with the quiet time seen in this measurement."""
    check_runtime(rt)
    timing = timing.with_protocol(DEFAULT_PROTOCOL)
    with tempfile.TemporaryDirectory(prefix="tfnas-measure-") as tmp:
        timers = [prepare_timer(n, rt, Path(tmp) / str(i)) for i, n in enumerate(nets)]
        ref = reference_for(rt, Path(tmp))
        if ref is None:
            runs = interleave(timers, timing)
            return [_raw_only(r, timing.protocol.statistic) for r in runs], None
        return _referenced(timers, ref, timing, reference_ms, reference_source, settings)


def _referenced(
    timers: Sequence[Timer], ref: Timer, timing: TimingSettings, reference_ms: float | None, source: str,
    settings: DriftSettings | None,
) -> tuple[list[DriftCancelled], float]:  # fmt: skip
    bar = timing.bar(len(timers) * timing.rounds)
    try:
        return measure_referenced(
            timers, ref, timing.protocol or DEFAULT_PROTOCOL, timing.rounds, reference_ms, source, timing.seed,
            settings, on_visit=bar.update,
        )  # fmt: skip
    finally:
        bar.close()


def measure_table_drift_cancelled(
    nets: Sequence[Network],
    table,
    timing: TimingSettings,
    threads: int | None = None,
    use_table_reference: bool = True,
    settings: DriftSettings | None = None,
) -> tuple[list[DriftCancelled], float | None]:
    """``measure_drift_cancelled`` with the table's runtime, shape, precision and statistic, converted with the
    reference time the table recorded on this device (else the quiet time seen now)."""
    rt = table_runtime(table, threads)
    ref_ms = table_reference_ms(table) if use_table_reference else None
    return measure_drift_cancelled(
        nets,
        rt,
        timing.with_protocol(protocol_for(table.protocol)),
        ref_ms,
        "table",
        drift_settings_for(table, settings),
    )


ONNX_TIMING = TimingSettings(rounds=5)  # the DARTS measurements and ``darts eval --measure``


def onnx_drift_cancelled(
    timers: Sequence[Timer], threads: int = 1, timing: TimingSettings = ONNX_TIMING, reference_ms: float | None = None
) -> tuple[list[DriftCancelled], float]:
    """Drift-cancelled figures of ready ONNX timers (ONNX Runtime, ``threads``): the DARTS measurements and
    ``darts eval --measure``. ``reference_ms`` None: the reference's quiet time seen in this measurement."""
    with tempfile.TemporaryDirectory(prefix="tfnas-ref-") as tmp:
        ref = reference_for(Runtime("ort", threads), Path(tmp))
        assert ref is not None
        return _referenced(timers, ref, timing, reference_ms, "table", None)
