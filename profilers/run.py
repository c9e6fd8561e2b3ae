"""Profile every graph of a bundle into a LUT, resumably.

The bundle is timed ``protocol.passes`` times (whole passes, so a burst of machine
load hits one pass of an entry, not all of them); each point's latency is the
median of its pass medians. Per-pass results are kept in the LUT under
``meta["passes"]`` ("key@width" -> list of pass results), which is also what
resuming reads.

The LUT is saved atomically every ``save_interval_s`` seconds (a save of a full LUT
takes ~25 ms, so saving after every ~50 ms measurement would double the run time)
and always on the way out (exception, Ctrl-C, SIGTERM via the CLI), so an
interruption loses at most the entry in progress; only a hard kill can lose the
last couple of seconds. Re-running with the same ``out_path`` loads the partial LUT, checks it
was made for the same bundle shape, device, runtime and protocol, and measures only
what is missing.

Precision: ``fp32`` times the bundle's graphs; ``int8`` first quantizes every graph still to be
timed (``profilers.quantize``: ONNX Runtime's static QDQ quantization, generated weights and
calibration tensors), in parallel processes and before any timing, then times the quantized
graphs. The recipe is recorded in the table's fingerprint (``quantization``).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from profilers.backends import Backend, get_backend
from profilers.bundle import Manifest, ManifestEntry, load_manifest
from profilers.errors import ProfilerError
from profilers.fingerprint import DEFAULT_MATCH_FIELDS, current_fingerprint
from profilers.lut import LatencyTable, sig
from profilers.quantize import QuantJob, claim_folder, default_workers, quantize_jobs
from profilers.timing import Clock, Measurement, TimingProtocol, measure
from profilers.weights import materialize
from tfnas_base import lock
from tfnas_base.errors import UserError
from tfnas_base.progress import Progress

EntryCallback = Callable[[int, ManifestEntry, Measurement], None]
PASSES_META = "passes"


def build_fingerprint(backend: Backend, manifest: Manifest) -> dict[str, Any]:
    """Fingerprint of this device for ``backend`` at the bundle's deployment shape."""
    fields = backend.fingerprint_fields()
    return current_fingerprint(
        threads=backend.threads,
        batch=manifest.batch,
        resolution=manifest.resolution,
        precision=backend.precision,
        **fields,
    )


def point_id(key: str, width: int | None) -> str:
    """Key of a (key, width) point in ``meta["passes"]``."""
    return f"{key}@{'null' if width is None else width}"


# A partial table resumes only with the same device identity and the same int8 recipe (absent for fp32).
RESUME_MATCH_FIELDS: tuple[str, ...] = (*DEFAULT_MATCH_FIELDS, "quantization")


def _open_table(
    out: Path, manifest: Manifest, fingerprint: dict[str, Any], protocol: TimingProtocol, resume: bool, backend: str
) -> LatencyTable:
    if resume and out.exists():
        try:
            table = LatencyTable.load(out)
        except UserError as exc:
            raise ProfilerError(f"cannot resume from {out}: {exc}; use --no-resume to start over") from None
        problems = []
        if table.space != manifest.space:
            problems.append(f"space: LUT has {table.space!r}, bundle is {manifest.space!r}")
        problems += table.fingerprint_mismatch(fingerprint, RESUME_MATCH_FIELDS)
        wanted = protocol.to_dict()
        for name in sorted(set(table.protocol) | set(wanted)):
            if table.protocol.get(name) != wanted.get(name):
                problems.append(
                    f"protocol.{name}: LUT has {table.protocol.get(name)!r}, requested {wanted.get(name)!r}"
                )
        if problems:
            raise ProfilerError(
                f"cannot resume {out}: it was measured with other settings:\n  "
                + "\n  ".join(problems)
                + "\nuse --no-resume to overwrite it, or another --out"
            )
        passes = table.meta.get(PASSES_META, {})
        if not isinstance(passes, dict) or not all(isinstance(v, list) for v in passes.values()):
            raise ProfilerError(f"cannot resume {out}: meta.{PASSES_META} is malformed; use --no-resume")
        # ``entries`` is what predictions read: a pass record of a point that ``entries`` lacks (an entry
        # deleted by hand, a crash between the two writes) must not count as measured.
        for key, width in manifest.keys_widths():
            if not table.measured(key, width):
                passes.pop(point_id(key, width), None)
        table.complete = False
        return table
    return LatencyTable(
        manifest.space,
        fingerprint,
        protocol.to_dict(),
        meta={"bundle": str(manifest.root), "backend": backend, "bundle_meta": manifest.meta, PASSES_META: {}},
        source=str(out),
    )


def _passes_done(table: LatencyTable, entry: ManifestEntry) -> int:
    results = table.meta.setdefault(PASSES_META, {}).get(point_id(entry.key, entry.width))
    if results is not None:
        return len(results)
    return 1 if table.measured(entry.key, entry.width) else 0  # LUT written without pass records


def _combine(results: list[dict[str, Any]], protocol: TimingProtocol, baseline: float | None = None) -> Measurement:
    """Median of the passes' values (the protocol's statistic) and of their medians; noisy if any pass
    was, or if the passes' values disagree by more than ``noisy_cv`` (with 3 or more passes: if most passes
    were, or the passes but the farthest from the median disagree).

    With ``baseline`` (the reference's typical time over the profile), a pass that recorded the reference's
    time around it (``ref_ms``) counts as ``value x baseline / ref_ms``: the host's speed at that moment
    cancels (``profilers.drift``)."""

    def scale(r: dict[str, Any]) -> float:
        ref = r.get("ref_ms")
        return baseline / float(ref) if baseline and ref else 1.0

    values = [float(r.get("value_ms", r["median_ms"])) * scale(r) for r in results]
    value = statistics.median(values)
    # with 3 or more passes (a noisy point re-timed) the one pass farthest from the median is an outlier, not noise
    close = sorted(values, key=lambda v: abs(v - value))[: len(values) - 1] if len(values) >= 3 else values
    disagree = (max(close) - min(close)) / value if value > 0 else 0.0
    flagged = [bool(r["noisy"]) for r in results]
    noisy_pass = sum(flagged) * 2 > len(flagged) if len(flagged) >= 3 else any(flagged)
    return Measurement(
        value_ms=value,
        statistic=protocol.statistic,
        median_ms=statistics.median(float(r["median_ms"]) * scale(r) for r in results),
        spread_ms=statistics.median(float(r["spread_ms"]) for r in results),
        cv=statistics.median(float(r["cv"]) for r in results),
        repeats=sum(int(r["repeats"]) for r in results),
        noisy=noisy_pass or disagree > protocol.noisy_cv,
        samples_kept=sum(int(r["samples_kept"]) for r in results),
        attempts=len(results),
    )


# The reference network is timed at least this often while a table is profiled: slow spells last seconds.
REFERENCE_EVERY_S = 0.5
REFERENCE_META = "reference_timings"
# Noisy points are re-timed for at most this share of the profile's timing time (at least REMEASURE_MIN_S).
REMEASURE_SHARE, REMEASURE_MIN_S = 0.25, 10.0
BUSY_SHARE = 0.05  # more noisy points than this after re-timing: the profile says the host was busy


def _reference_options(be: Backend) -> dict[str, Any]:
    """The backend options the reference is timed with: the table's threads and precision. Spells hit int8 kernels
    harder than fp32 ones (issue 24: 1.33x vs 1.13x), so an int8 profile times the reference quantized too."""
    options: dict[str, Any] = {"threads": be.threads, "precision": be.precision}
    if getattr(be, "quantization", None) is not None:
        options["quantization"] = be.quantization
    return options


class _ReferenceTrack:
    """Times the reference network between the bundle's graphs (at least every ``REFERENCE_EVERY_S``) and gives
    every pass record timed since the previous reference timing the mean of the two around it (``ref_ms``)."""

    def __init__(self, be: Backend, workdir: Path, protocol: TimingProtocol, clock: Clock | None, table: LatencyTable):
        from profilers.reference import reference_timer

        self.fn = None
        try:  # the reference at the table's threads and precision (int8: quantized with its recipe), no fake clock
            if clock is None:
                self.fn = reference_timer(get_backend(be.name, **_reference_options(be)), workdir)
        except (UserError, TypeError):
            self.fn = None  # a backend without ONNX input (or a test double): no drift correction
        self.protocol = protocol
        self.values: list[float] = table.meta.setdefault(REFERENCE_META, [])
        self.pending: list[dict[str, Any]] = []
        self.last: float | None = None
        self.t_last = -float("inf")

    def _time(self) -> float | None:
        if self.fn is None:
            return None
        value = sig(measure(self.fn, self.protocol).latency_ms)
        self.values.append(value)
        for rec in self.pending:
            rec["ref_ms"] = sig((value + self.last) / 2.0) if self.last is not None else value
        self.pending.clear()
        self.last, self.t_last = value, time.monotonic()
        return value

    def before(self) -> None:
        if self.fn is not None and (self.last is None or time.monotonic() - self.t_last >= REFERENCE_EVERY_S):
            self._time()

    def after(self, record: dict[str, Any]) -> None:
        if self.fn is not None:
            self.pending.append(record)

    def close(self) -> None:
        if self.pending:
            self._time()

    def baseline(self) -> float | None:
        from profilers.drift import reference_typical

        return reference_typical(self.values) if self.values else None


# A profile's reference timings count as this host's state for a calibration started this soon after it.
PROFILE_FRESH_S = 1800.0


def recent_profile_timings(table: LatencyTable, within_s: float = PROFILE_FRESH_S) -> list[float]:
    """The reference timings of the profile behind ``table``'s reference record, when it was recorded less than
    ``within_s`` ago (else none). A calibration right after its profile joins them, so the table records the
    host's typical speed over minutes rather than over its own half minute (measured on an Intel AMX host:
    20-s windows of the reference's median from 0.30 to 0.59 ms; a calibration's 29 s read 0.325, its
    profile's 2 minutes 0.367)."""
    import calendar

    ref = table.reference or {}
    if not str(ref.get("how", "")).startswith("profile:"):
        return []
    try:
        when = calendar.timegm(time.strptime(str(ref.get("measured")), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return []
    if not 0 <= time.time() - when <= within_s:
        return []
    return [float(v) for v in table.meta.get(REFERENCE_META, [])]


class _Saver:
    """Saves the LUT after ``every`` new points or ``interval_s`` seconds, whichever comes first."""

    def __init__(self, table: LatencyTable, out: Path, every: int, interval_s: float) -> None:
        self.table, self.out, self.every, self.interval_s = table, out, every, interval_s
        self.unsaved = 0
        self.last = time.monotonic()

    def measured(self) -> None:
        self.unsaved += 1
        if self.unsaved >= self.every or time.monotonic() - self.last >= self.interval_s:
            self.table.save(self.out)
            self.unsaved = 0
            self.last = time.monotonic()

    def flush(self) -> None:
        if self.unsaved:
            self.table.save(self.out)


def _prepare(
    be: Backend,
    manifest: Manifest,
    i: int,
    entry: ManifestEntry,
    workdir: Path,
    table: LatencyTable,
    out: Path,
    converted: dict[int, Path] | None = None,
) -> Callable[[], None]:
    """The backend's runner of entry ``i``'s graph (weights materialized into ``workdir`` when stripped;
    ``converted[i]``, when given, is the graph already quantized)."""
    try:
        if converted and i in converted:
            return be.prepare(converted[i], entry.input_shape)
        graph = entry.path if manifest.weights == "embedded" else materialize(entry.path, workdir)
        fn = be.prepare(graph, entry.input_shape)
        if graph != entry.path:
            graph.unlink()
        return fn
    except UserError as exc:
        raise ProfilerError(
            f"{exc}\n  (bundle entry {i}: key {entry.key!r}, width {entry.width}, file {entry.file}); "
            f"the {table.n_points()} points measured so far are saved in {out}"
        ) from None


def _pass_record(m: Measurement) -> dict[str, Any]:
    return {
        "value_ms": sig(m.latency_ms),
        "median_ms": sig(m.median_ms),
        "spread_ms": sig(m.spread_ms),
        "cv": sig(m.cv),
        "repeats": m.repeats,
        "noisy": m.noisy,
        "samples_kept": m.samples_kept,
    }


def _record(
    table: LatencyTable,
    records: dict[str, list[dict[str, Any]]],
    entry: ManifestEntry,
    m: Measurement,
    protocol: TimingProtocol,
) -> dict[str, Any]:
    """Add pass ``m`` of ``entry`` to its pass records and its combined value to the table; return the record."""
    pid = point_id(entry.key, entry.width)
    if pid not in records and table.measured(entry.key, entry.width):
        # a LUT written without pass records: its value counts as the first pass
        old = table.entry(entry.key)
        j = old["widths"].index(entry.width)
        records[pid] = [
            {
                "value_ms": old["latency_ms"][j],
                "median_ms": old.get("median_ms", old["latency_ms"])[j],
                "spread_ms": old["spread_ms"][j],
                "cv": old["cv"][j],
                "repeats": old["repeats"][j],
                "noisy": old["noisy"][j],
                "samples_kept": old["repeats"][j],
            }
        ]
    rec = _pass_record(m)
    records.setdefault(pid, []).append(rec)
    table.add_measurement(entry.key, entry.width, _combine(records[pid], protocol))
    return rec


def profile_bundle(
    bundle_dir: str | Path,
    out_path: str | Path,
    backend: str | Backend = "ort",
    threads: int = 1,
    protocol: TimingProtocol | None = None,
    progress: bool = True,
    resume: bool = True,
    *,
    precision: str | None = None,
    save_every: int = 20,
    save_interval_s: float = 2.0,
    clock: Clock | None = None,
    on_entry: EntryCallback | None = None,
    quantize_workers: int | None = None,
    quantized_dir: str | Path | None = None,
    retime_noisy: bool = True,
) -> LatencyTable:
    """Measure every manifest entry (``protocol.passes`` times) not yet in ``out_path``; return the LUT.

    ``backend`` is a registry name or a ready ``Backend`` instance. ``precision`` (fp32 | int8;
    default: the bundle manifest's) is passed to a backend named by its registry name; an int8
    bundle is quantized in ``quantize_workers`` processes (default: the usable cores) first, into
    ``quantized_dir`` (graphs already there, quantized with the same settings, are reused; default: a
    temporary folder). The LUT is saved after
    ``save_every`` entries or ``save_interval_s`` seconds, whichever comes first, and on any
    exit (exception, Ctrl-C); ``on_entry`` is called after each measured entry (tests use it
    to inject interruptions). A second process profiling into the same ``out_path`` is refused
    (``tfnas_base.lock``). Every value is drift-cancelled against the reference network timed between the
    graphs, and (``retime_noisy``) noisy points are timed again, bounded in time, while their count falls.
    """
    with lock.exclusive(table_lock(out_path), f"latency table {out_path}"):
        return _profile_bundle(bundle_dir, out_path, backend, threads, protocol, progress, resume, precision,
                               save_every, save_interval_s, clock, on_entry, quantize_workers,
                               quantized_dir, retime_noisy)  # fmt: skip


def _quantize_bundle(
    be: Backend,
    manifest: Manifest,
    entries: list[tuple[int, ManifestEntry]],
    table: LatencyTable,
    protocol: TimingProtocol,
    qdir: Path,
    progress: bool,
    workers: int | None,
) -> dict[int, Path]:
    """INT8: quantize every graph that still has passes to time into ``qdir`` (before any timing; graphs
    already there with the same settings are kept); entry index -> quantized graph. Nothing for fp32."""
    settings = getattr(be, "quantization", None)
    if settings is None:
        return {}
    todo = [(i, e) for i, e in entries if _passes_done(table, e) < protocol.passes]
    if not todo:
        return {}
    claim_folder(qdir, settings)
    workers = default_workers() if workers is None else max(1, int(workers))
    jobs = {
        i: QuantJob(str(e.path), tuple(e.input_shape), str(qdir / e.path.name), manifest.weights == "generated")
        for i, e in todo
    }
    missing = [job for job in jobs.values() if not Path(job.out).is_file()]
    bar = Progress(len(jobs), len(jobs) - len(missing), enabled=None if progress else False, desc="quantize")
    t0 = time.perf_counter()
    try:
        quantize_jobs(missing, settings, workers, on_done=lambda job: bar.update(Path(job.src).name))
    finally:
        bar.close()
    table.meta["quantize"] = {
        "graphs": len(jobs),
        "quantized_before": len(jobs) - len(missing),
        "seconds": round(time.perf_counter() - t0, 1),
        "workers": workers,
        "settings": settings.describe(),
    }
    return {i: Path(job.out) for i, job in jobs.items()}


def _apply_reference(
    table: LatencyTable, records: dict, entries: list, protocol: TimingProtocol, baseline: float | None
) -> None:
    """Every point's value from its passes, each scaled by the reference's typical time over its own; the table
    records that time as its ``reference`` (what later drift-cancelled timings convert with)."""
    if baseline is None:
        return
    for _, entry in entries:
        results = records.get(point_id(entry.key, entry.width))
        if results:
            table.add_measurement(entry.key, entry.width, _combine(results, protocol, baseline))
    from profilers.reference import reference_record

    timings = len(table.meta.get(REFERENCE_META, []))
    how = f"profile: median of {timings} reference timings"
    threads, backend = int(table.fingerprint.get("threads", 1)), str(table.meta.get("backend", ""))
    precision = str(table.fingerprint.get("precision", "fp32"))
    table.set_reference(reference_record(baseline, threads, backend, how, protocol.statistic, precision, timings))


def _noisy(table: LatencyTable, entries: list) -> list:
    out = []
    for i, entry in entries:
        if table.measured(entry.key, entry.width):
            e = table.entry(entry.key)
            if e["noisy"][e["widths"].index(entry.width)]:
                out.append((i, entry))
    return out


def _remeasure_noisy(
    table: LatencyTable, records: dict, entries: list, protocol: TimingProtocol, track: _ReferenceTrack,
    time_entry: Callable[[int, ManifestEntry, str], Measurement], timing_s: float,
) -> None:  # fmt: skip
    """Re-time noisy points (one more pass each, bounded in time) while their count falls; record the counts
    in ``meta.noisy_points`` and, when too many stay noisy, ``meta.host_busy``."""
    noisy = _noisy(table, entries)
    before, rounds = len(noisy), 0
    budget = max(REMEASURE_MIN_S, REMEASURE_SHARE * timing_s)
    t0 = time.monotonic()
    while noisy and time.monotonic() - t0 < budget:
        rounds += 1
        for i, entry in noisy:
            if time.monotonic() - t0 >= budget:
                break
            time_entry(i, entry, f"re-time (noisy) {rounds}")
        track.close()
        _apply_reference(table, records, entries, protocol, track.baseline())
        still = _noisy(table, entries)
        if len(still) >= len(noisy):
            noisy = still
            break  # the count no longer falls
        noisy = still
    points = sum(1 for _, e in entries if table.measured(e.key, e.width))
    table.meta["noisy_points"] = {"before": before, "after": len(noisy), "remeasure_rounds": rounds, "points": points}
    table.meta["host_busy"] = bool(points and len(noisy) > BUSY_SHARE * points)


def profile_note(table: LatencyTable) -> str:
    """What a profile's drift handling did, for the commands' closing line ('' for tables without it)."""
    parts = []
    ref = table.reference
    if ref:
        parts.append(f"values drift-cancelled against the reference network ({ref['ms']:.4f} ms quiet here)")
    counts = table.meta.get("noisy_points")
    if counts:
        parts.append(f"noisy points {counts['before']} -> {counts['after']} after re-timing")
    if table.meta.get("host_busy"):
        parts.append(
            "THE HOST WAS BUSY: too many points stayed noisy; profile again on a quieter machine"
            " (or validate the table: `tfnas validate`)"
        )
    return "; ".join(parts)


def table_lock(out_path: str | Path) -> Path:
    """The lock file of a table being written."""
    return Path(str(out_path) + ".lock")


def _profile_bundle(
    bundle_dir: str | Path,
    out_path: str | Path,
    backend: str | Backend,
    threads: int,
    protocol: TimingProtocol | None,
    progress: bool,
    resume: bool,
    precision: str | None,
    save_every: int,
    save_interval_s: float,
    clock: Clock | None,
    on_entry: EntryCallback | None,
    quantize_workers: int | None = None,
    quantized_dir: str | Path | None = None,
    retime_noisy: bool = True,
) -> LatencyTable:
    protocol = protocol or TimingProtocol()
    manifest = load_manifest(bundle_dir)
    precision = precision or manifest.profile_precision  # each backend checks the precisions it supports
    be = backend if isinstance(backend, Backend) else get_backend(backend, threads=threads, precision=precision)
    out = Path(out_path)
    fingerprint = build_fingerprint(be, manifest)
    table = _open_table(out, manifest, fingerprint, protocol, resume, be.name)
    records: dict[str, list[dict[str, Any]]] = table.meta.setdefault(PASSES_META, {})
    entries = list(enumerate(manifest.entries))
    total = len(entries) * protocol.passes
    done = sum(min(_passes_done(table, e), protocol.passes) for _, e in entries)
    table.save(out)  # fail early on an unwritable path, before any measuring
    scratch = contextlib.ExitStack()
    workdir = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="tfnas-graph-")))
    try:  # int8: every graph still to time is quantized first, in parallel, while nothing is being timed
        converted = _quantize_bundle(
            be, manifest, entries, table, protocol, Path(quantized_dir) if quantized_dir else workdir / "int8",
            progress, quantize_workers,
        )  # fmt: skip
    except BaseException:
        scratch.close()
        raise
    bar = Progress(total, done, enabled=None if progress else False)
    saver = _Saver(table, out, save_every, save_interval_s)
    track = _ReferenceTrack(be, workdir, protocol, clock, table)
    t0 = time.monotonic()

    def time_entry(i: int, entry: ManifestEntry, label: str) -> Measurement:
        track.before()
        fn = _prepare(be, manifest, i, entry, workdir, table, out, converted)
        m = measure(fn, protocol) if clock is None else measure(fn, protocol, clock)
        del fn
        track.after(_record(table, records, entry, m, protocol))
        saver.measured()
        flag = " NOISY" if m.noisy else ""
        bar.update(f"{label} {m.latency_ms:.3f}ms cv={m.cv:.1%}{flag} {entry.key} w={entry.width}")
        if on_entry is not None:
            on_entry(i, entry, m)
        return m

    try:
        timed = 0
        for pass_no in range(1, protocol.passes + 1):
            for i, entry in entries:
                if _passes_done(table, entry) < pass_no:
                    time_entry(i, entry, f"p{pass_no}")
                    timed += 1
        track.close()
        if timed:  # a re-run of a finished table changes nothing
            _apply_reference(table, records, entries, protocol, track.baseline())
        if timed and retime_noisy:
            _remeasure_noisy(table, records, entries, protocol, track, time_entry, time.monotonic() - t0)
    finally:
        track.close()
        scratch.close()
        saver.flush()
        bar.close()
    table.complete = all(_passes_done(table, e) >= protocol.passes for _, e in entries)
    table.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    table.save(out)
    return table
