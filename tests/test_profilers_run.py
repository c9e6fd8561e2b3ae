"""End-to-end profiling of a tiny bundle on the ONNX Runtime backend, with interruption and resume."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from profilers import cli
from profilers.backends import BACKENDS, OrtBackend, get_backend
from profilers.bundle import load_manifest
from profilers.demo import write_demo_bundle
from profilers.errors import ProfilerError
from profilers.lut import LatencyTable
from profilers.run import profile_bundle
from profilers.timing import TimingProtocol

TINY = TimingProtocol(
    warmup=1, min_repeats=3, max_repeats=5, floor_repeats=2, max_time_s=0.05, remeasure_attempts=0, passes=1
)


class CountingBackend(OrtBackend):
    """The real ort backend, counting which graphs get prepared."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.prepared: list[str] = []

    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        self.prepared.append(Path(onnx_path).name)
        return super().prepare(onnx_path, input_shape)


class Interrupt(Exception):
    pass


def stop_after(k: int) -> Callable[[int, Any, Any], None]:
    seen = []

    def cb(i: int, entry: Any, m: Any) -> None:
        seen.append(i)
        if len(seen) == k:
            raise Interrupt

    return cb


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_demo_bundle(tmp_path / "bundle")


def test_registry_has_no_torch_backend() -> None:
    assert set(BACKENDS) == {"ort", "tensorrt"}
    with pytest.raises(ProfilerError, match=r"unknown backend 'cuda'; available: \['ort', 'tensorrt'\]"):
        get_backend("cuda")


def test_profile_tiny_bundle(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    table = profile_bundle(bundle, out, protocol=TINY, progress=False)
    manifest = load_manifest(bundle)
    assert table.complete
    assert table.n_points() == len(manifest.entries) == 7
    loaded = LatencyTable.load(out)
    assert loaded.complete and loaded.space == "demo"
    assert loaded.fingerprint["threads"] == 1 and loaded.fingerprint["resolution"] == 8
    assert loaded.fingerprint["provider"] == "CPUExecutionProvider"
    assert loaded.protocol == TINY.to_dict()
    assert loaded.widths("conv|c4|8x8") == [4, 8, 16]
    assert loaded.widths("stem|c3|8x8") == [None]
    assert all(v > 0 for k in loaded.keys() for v in loaded.entry(k)["latency_ms"])
    lat4, lat8 = loaded.latency("conv|c4|8x8", 4), loaded.latency("conv|c4|8x8", 8)
    assert min(lat4, lat8) <= loaded.latency("conv|c4|8x8", 6) <= max(lat4, lat8)
    assert loaded.missing(manifest.keys_widths()) == []


def test_interrupt_and_resume_does_not_remeasure(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    first = CountingBackend()
    with pytest.raises(Interrupt):
        profile_bundle(
            bundle, out, backend=first, protocol=TINY, progress=False, retime_noisy=False, on_entry=stop_after(3)
        )
    assert len(first.prepared) == 3
    partial = LatencyTable.load(out)
    assert partial.n_points() == 3 and not partial.complete

    second = CountingBackend()
    table = profile_bundle(bundle, out, backend=second, protocol=TINY, progress=False, retime_noisy=False)
    assert len(second.prepared) == 4
    assert set(first.prepared).isdisjoint(second.prepared)
    assert table.complete and table.n_points() == 7
    # already measured passes were kept, not re-measured (their values are only re-scaled by the reference)
    for pid, records in partial.meta["passes"].items():
        assert [r["value_ms"] for r in table.meta["passes"][pid]] == [r["value_ms"] for r in records]

    third = CountingBackend()
    profile_bundle(bundle, out, backend=third, protocol=TINY, progress=False, retime_noisy=False)
    assert third.prepared == []


def test_passes_interrupted_in_second_pass_resume(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    two = TimingProtocol(**{**TINY.to_dict(), "passes": 2})
    first = CountingBackend()
    with pytest.raises(Interrupt):
        profile_bundle(
            bundle, out, backend=first, protocol=two, progress=False, retime_noisy=False, on_entry=stop_after(7 + 2)
        )
    assert len(first.prepared) == 9
    partial = LatencyTable.load(out)
    assert partial.n_points() == 7 and not partial.complete
    assert sorted(len(v) for v in partial.meta["passes"].values()) == [1] * 5 + [2] * 2

    second = CountingBackend()
    table = profile_bundle(bundle, out, backend=second, protocol=two, progress=False, retime_noisy=False)
    assert len(second.prepared) == 5
    assert table.complete
    records = table.meta["passes"]
    assert all(len(v) == 2 for v in records.values())
    e = table.entry("conv|c4|8x8")
    base = table.reference["ms"]  # each pass's p10 in units of the reference timed around it, x its quiet time
    meds = [r["value_ms"] * base / r["ref_ms"] for r in records["conv|c4|8x8@8"]]
    # median of the two passes' drift-cancelled p10s, as the table stores it: 6 significant digits
    assert e["latency_ms"][e["widths"].index(8)] == pytest.approx(sum(meds) / 2, rel=1e-5)


def test_no_resume_starts_over(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    profile_bundle(bundle, out, protocol=TINY, progress=False, retime_noisy=False)
    again = CountingBackend()
    profile_bundle(bundle, out, backend=again, protocol=TINY, progress=False, retime_noisy=False, resume=False)
    assert len(again.prepared) == 7


def test_resume_with_other_settings_is_refused(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    with pytest.raises(Interrupt):
        profile_bundle(bundle, out, protocol=TINY, progress=False, on_entry=stop_after(1))
    with pytest.raises(ProfilerError, match=r"(?s)cannot resume .*threads: LUT has 1, current is 2.*--no-resume"):
        profile_bundle(bundle, out, threads=2, protocol=TINY, progress=False)
    other = TimingProtocol(**{**TINY.to_dict(), "max_repeats": 9})
    with pytest.raises(ProfilerError, match=r"protocol.max_repeats: LUT has 5, requested 9"):
        profile_bundle(bundle, out, protocol=other, progress=False)


def test_bad_graph_names_file_and_keeps_measured(bundle: Path, tmp_path: Path) -> None:
    manifest = load_manifest(bundle)
    bad = manifest.entries[4]
    bad.path.write_bytes(b"this is not an onnx graph")
    out = tmp_path / "lut.json"
    with pytest.raises(ProfilerError, match=rf"cannot load graph .*{bad.path.name}"):
        profile_bundle(bundle, out, protocol=TINY, progress=False)
    partial = LatencyTable.load(out)
    assert partial.n_points() == 4 and not partial.complete


def test_corrupt_partial_lut_is_reported(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.json"
    out.write_text('{"format": "tfnas.lut", "entr')
    with pytest.raises(ProfilerError, match=r"cannot resume from .*lut.json.*not valid JSON.*--no-resume"):
        profile_bundle(bundle, out, protocol=TINY, progress=False)


def _rewrite_manifest(bundle: Path, change: Callable[[dict], None]) -> None:
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="x"), "format='x', expected 'tfnas.bundle'"),
        (lambda d: d.update(version=7), "version=7"),
        (lambda d: d.pop("batch"), "missing field 'batch'"),
        (lambda d: d.update(resolution=0), "resolution=0, expected an integer >= 1"),
        (lambda d: d.update(precision="int8"), "precision='int8'"),
        (lambda d: d.update(entries=[]), "entries=\\[\\], expected a non-empty list"),
        (lambda d: d["entries"][1].update(width=0), r"entries\[1\] \(key 'conv\|c4\|8x8'\): width=0"),
        (lambda d: d["entries"][0].update(input_shape=[1, 4, 8]), r"entries\[0\].*input_shape=\[1, 4, 8\]"),
        (lambda d: d["entries"][0].update(input_shape=[2, 4, 8, 8]), "differs from the manifest batch 1"),
        (lambda d: d["entries"][0].update(file="../x.onnx"), "must be a relative path inside the bundle"),
        (lambda d: d["entries"][2].update(width=4), r"duplicate \(key, width\) = \('conv\|c4\|8x8', 4\)"),
        (lambda d: d["entries"][0].pop("key"), r"entries\[0\]: missing field 'key'"),
    ],
)
def test_manifest_validation(bundle: Path, change: Callable[[dict], None], message: str) -> None:
    _rewrite_manifest(bundle, change)
    with pytest.raises(ProfilerError, match=message) as exc:
        load_manifest(bundle)
    assert "manifest.json" in str(exc.value)


def test_missing_graph_files_are_listed(bundle: Path) -> None:
    (bundle / "graphs" / "g001.onnx").unlink()
    (bundle / "graphs" / "g005.onnx").unlink()
    with pytest.raises(ProfilerError, match=r"2 graph file\(s\) missing .*graphs/g001.onnx, graphs/g005.onnx"):
        load_manifest(bundle)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ProfilerError, match="manifest.json is missing"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ProfilerError, match="manifest.json is not valid JSON"):
        load_manifest(tmp_path)


def test_cli_run_and_info(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lut.json"
    args = ["run", str(bundle), "--out", str(out), "--no-progress", "--warmup", "1", "--min-repeats", "3"]
    args += ["--max-repeats", "5", "--max-time", "0.05", "--remeasure", "0", "--passes", "1"]
    assert cli.main(args) == 0
    assert "7 points" in capsys.readouterr().out
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "conv|c4|8x8" in text and "4..16 (3)" in text and "complete=True" in text


def test_cli_errors_have_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tfnas.lut", "schema_ver')
    assert cli.main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: LUT file") and "bad.json" in err and "Traceback" not in err
    assert cli.main(["run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.json")]) == 2
    assert "bundle folder" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path), "--out", str(tmp_path / "o.json"), "--backend", "tensorrt"]) == 2


def test_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from tfnas_base.progress import Progress

    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `from tqdm import tqdm` fail
    stream = io.StringIO()
    bar = Progress(4, initial=1, stream=stream)
    bar.update("k w=8")
    bar.close()
    assert "2/4 graphs, 2 left" in stream.getvalue()


class FakeClockBackend(OrtBackend):
    """Graphs 'run' on a fake clock: constant 1 ms, except one graph alternating 1 ms / 3 ms."""

    def __init__(self, noisy_file: str) -> None:
        super().__init__(threads=1)
        self.now = 0.0
        self.noisy_file = noisy_file
        self.calls: dict[str, int] = {}

    def clock(self) -> float:
        return self.now

    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        name = Path(onnx_path).name

        def run() -> None:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            noisy = name == self.noisy_file and n % 2 == 0
            self.now += 0.003 if noisy else 0.001

        return run


def test_noisy_entry_is_remeasured_and_stays_flagged(bundle: Path, tmp_path: Path) -> None:
    entry = load_manifest(bundle).entries[1]
    be = FakeClockBackend(entry.path.name)
    p = TimingProtocol(warmup=0, min_repeats=10, max_repeats=10, floor_repeats=2, remeasure_attempts=2, passes=2)
    table = profile_bundle(
        bundle, tmp_path / "lut.json", backend=be, protocol=p, progress=False, retime_noisy=False, clock=be.clock
    )
    assert be.calls[entry.path.name] == 2 * 3 * 10  # 2 passes x (1 + 2 re-measures) x 10 samples
    assert all(n == 2 * 10 for f, n in be.calls.items() if f != entry.path.name)  # quiet: measured once per pass
    e = LatencyTable.load(tmp_path / "lut.json").entry(entry.key)
    i = e["widths"].index(entry.width)
    assert e["noisy"][i] is True and e["cv"][i] > 0.1
    assert sum(e["noisy"]) == 1 and table.complete


class SpellBackend(FakeClockBackend):
    """Every graph takes 1 ms, but the first pass of one graph ran in a 50% slow spell."""

    def prepare(self, onnx_path: str | Path, input_shape: Sequence[int]) -> Callable[[], None]:
        name = Path(onnx_path).name
        self.calls[name] = self.calls.get(name, 0) + 1  # counts preparations (one per pass)
        slow = name == self.noisy_file and self.calls[name] == 1

        def run() -> None:
            self.now += 0.0015 if slow else 0.001

        return run


def test_a_point_noisy_from_a_spell_is_retimed_until_the_count_falls(bundle: Path, tmp_path: Path) -> None:
    entry = load_manifest(bundle).entries[1]
    be = SpellBackend(entry.path.name)
    p = TimingProtocol(warmup=0, min_repeats=10, max_repeats=10, floor_repeats=2, remeasure_attempts=0, passes=2)
    table = profile_bundle(bundle, tmp_path / "lut.json", backend=be, protocol=p, progress=False, clock=be.clock)
    assert be.calls[entry.path.name] == 3  # two passes (they disagree by 50%: noisy), then timed once more
    assert all(n == 2 for f, n in be.calls.items() if f != entry.path.name)
    e = table.entry(entry.key)
    i = e["widths"].index(entry.width)
    assert e["noisy"][i] is False and e["latency_ms"][i] == pytest.approx(1.0)  # the spell's pass is outvoted
    assert table.meta["noisy_points"] == {"before": 1, "after": 0, "remeasure_rounds": 1, "points": 7}
    assert table.meta["host_busy"] is False


def test_a_profile_whose_points_stay_noisy_says_the_host_was_busy(bundle: Path, tmp_path: Path) -> None:
    be = FakeClockBackend("")  # every graph alternates 1 / 3 ms, pass after pass

    def prepare(onnx_path, input_shape):
        def run() -> None:
            be.calls["n"] = be.calls.get("n", 0) + 1
            be.now += 0.003 if be.calls["n"] % 2 else 0.001

        return run

    be.prepare = prepare
    p = TimingProtocol(warmup=0, min_repeats=10, max_repeats=10, floor_repeats=2, remeasure_attempts=0, passes=2)
    table = profile_bundle(bundle, tmp_path / "lut.json", backend=be, protocol=p, progress=False, clock=be.clock)
    counts = table.meta["noisy_points"]
    assert counts["before"] == counts["after"] == 7 and counts["remeasure_rounds"] == 1  # stopped: no fall
    assert table.meta["host_busy"] is True
    from profilers.run import profile_note

    assert "THE HOST WAS BUSY" in profile_note(table)


def test_entry_deleted_by_hand_is_measured_again_despite_its_pass_records(bundle: Path, tmp_path: Path) -> None:
    """meta.passes still holds the deleted point's records; entries is what counts, so resume re-measures it."""
    out = tmp_path / "lut.json"
    profile_bundle(bundle, out, protocol=TINY, progress=False)
    doc = json.loads(out.read_text())
    del doc["entries"]["stem|c3|8x8"]
    assert "stem|c3|8x8@null" in doc["meta"]["passes"]
    out.write_text(json.dumps(doc))
    again = CountingBackend()
    table = profile_bundle(bundle, out, backend=again, protocol=TINY, progress=False, retime_noisy=False)
    assert len(again.prepared) == 1
    assert table.complete and table.has("stem|c3|8x8")
    assert table.missing(load_manifest(bundle).keys_widths()) == []
