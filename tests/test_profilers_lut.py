"""LUT file: schema, round trip, atomic writes, interpolation and error messages."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from profilers.errors import ProfilerError
from profilers.fingerprint import REQUIRED_FINGERPRINT_KEYS, current_fingerprint
from profilers.lut import LatencyTable
from profilers.timing import Measurement, TimingProtocol

KEY = "ir|k3_e6_se|in24_out40|s2|56x56|swish"


def m(ms: float, cv: float = 0.01, noisy: bool = False) -> Measurement:
    return Measurement(median_ms=ms, spread_ms=ms * 0.02, cv=cv, repeats=30, noisy=noisy, samples_kept=29)


def make_table() -> LatencyTable:
    fp = current_fingerprint(threads=1, batch=1, resolution=224)
    t = LatencyTable("tfnas_mbv2", fp, TimingProtocol().to_dict())
    t.add_measurement(KEY, 144, m(3.0))
    t.add_measurement(KEY, 48, m(1.0))
    t.add_measurement(KEY, 96, m(2.0, cv=0.2, noisy=True))
    t.add_measurement("stem|c3_out32|s2|224x224", None, m(0.5))
    return t


def test_fingerprint_has_required_keys() -> None:
    fp = current_fingerprint(threads=2, batch=1, resolution=224)
    assert set(REQUIRED_FINGERPRINT_KEYS) <= set(fp)
    assert fp["threads"] == 2 and fp["runtime"] == "onnxruntime" and fp["cpu_model"]


def test_round_trip(tmp_path: Path) -> None:
    t = make_table()
    t.complete = True
    path = t.save(tmp_path / "lut.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "tfnas.lut" and doc["schema_version"] == 2
    assert doc["entries"][KEY]["widths"] == [48, 96, 144]
    assert doc["entries"][KEY]["noisy"] == [False, True, False]
    u = LatencyTable.load(path)
    assert u.keys() == t.keys()
    assert u.entry(KEY) == t.entry(KEY)
    assert u.fingerprint == t.fingerprint and u.protocol == t.protocol and u.complete
    assert u.widths(KEY) == [48, 96, 144]
    assert u.has(KEY) and not u.has("nope")
    assert u.latency("stem|c3_out32|s2|224x224") == 0.5


def test_interpolation_exact_at_grid_and_linear_between() -> None:
    t = make_table()
    assert t.latency(KEY, 48) == 1.0
    assert t.latency(KEY, 96) == 2.0
    assert t.latency(KEY, 144) == 3.0
    assert t.latency(KEY, 72) == pytest.approx(1.5)
    assert t.latency(KEY, 60) == pytest.approx(1.25)
    assert t.latency(KEY, 120) == pytest.approx(2.5)


def test_extrapolation_is_an_error_naming_key_and_range() -> None:
    t = make_table()
    with pytest.raises(ProfilerError, match=r"width 200 .*in24_out40.*\[48, 144\].*extrapolation"):
        t.latency(KEY, 200)
    with pytest.raises(ProfilerError, match=r"width 8 "):
        t.latency(KEY, 8)
    with pytest.raises(ProfilerError, match="no entry for key 'ir|k5"):
        t.latency(KEY.replace("k3", "k5"), 96)
    with pytest.raises(ProfilerError, match="needs a width"):
        t.latency(KEY)


def test_missing_lists_unanswerable_points() -> None:
    t = make_table()
    need = [(KEY, 50), (KEY, 150), ("other|x", 10), ("stem|c3_out32|s2|224x224", None)]
    assert t.missing(need) == [(KEY, 150), ("other|x", 10)]
    assert t.measured(KEY, 96) and not t.measured(KEY, 50)


def test_fingerprint_mismatch_is_readable() -> None:
    t = make_table()
    current = dict(t.fingerprint, threads=2, runtime_version="9.9.9")
    diffs = t.fingerprint_mismatch(current)
    assert "threads: LUT has 1, current is 2" in diffs
    assert any(d.startswith("runtime_version: LUT has") and "'9.9.9'" in d for d in diffs)
    assert len(diffs) == 2
    assert t.fingerprint_mismatch(dict(t.fingerprint)) == []


def test_check_shape() -> None:
    t = make_table()
    t.check_shape(1, 224)
    with pytest.raises(ProfilerError, match=r"batch 1, resolution 224; needed batch 32, resolution 224"):
        t.check_shape(32, 224)


def test_atomic_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lut.json"
    make_table().save(path)
    before = path.read_bytes()
    t = make_table()
    t.add_measurement(KEY, 200, m(4.0))

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ProfilerError, match=r"cannot write LUT file .*lut.json: disk full"):
        t.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lut.json"]  # no temp file left behind
    assert LatencyTable.load(path).widths(KEY) == [48, 96, 144]


def test_unserialisable_table_does_not_touch_file(tmp_path: Path) -> None:
    path = tmp_path / "lut.json"
    t = make_table()
    t.save(path)
    before = path.read_bytes()
    t.meta["bad"] = object()
    with pytest.raises(ProfilerError, match="cannot serialise"):
        t.save(path)
    assert path.read_bytes() == before


def test_truncated_file_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "lut.json"
    make_table().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProfilerError, match=r"lut.json is not valid JSON \(truncated or corrupted\?\)"):
        LatencyTable.load(path)
    path.write_bytes(b"")
    with pytest.raises(ProfilerError, match="lut.json is empty"):
        LatencyTable.load(path)
    path.write_bytes(b"\x80\x81garbage")
    with pytest.raises(ProfilerError, match="lut.json"):
        LatencyTable.load(path)
    with pytest.raises(ProfilerError, match="does not exist"):
        LatencyTable.load(tmp_path / "nope.json")


def _doc() -> dict:
    return make_table().to_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "'format' is 'other'"),
        (lambda d: d.update(schema_version=3), "schema_version 3 is not supported"),
        (lambda d: d.pop("protocol"), r"missing top-level field\(s\) \['protocol'\]"),
        (lambda d: d.update(extra=1), "unknown top-level field"),
        (lambda d: d["fingerprint"].pop("cpu_model"), r"fingerprint is missing \['cpu_model'\]"),
        (lambda d: d["fingerprint"].update(threads=0), "fingerprint.threads=0"),
        (lambda d: d["entries"][KEY]["cv"].pop(), "list lengths differ"),
        (lambda d: d["entries"][KEY].update(widths=[96, 48, 144]), "sorted ascending without duplicates"),
        (lambda d: d["entries"][KEY].update(widths=[48, 48, 144]), "sorted ascending without duplicates"),
        (lambda d: d["entries"][KEY]["latency_ms"].__setitem__(1, -1.0), r"latency_ms\[1\]=-1.0 \(width 96\)"),
        (lambda d: d["entries"][KEY]["latency_ms"].__setitem__(0, 0), r"latency_ms\[0\]=0"),
        (lambda d: d["entries"][KEY].pop("repeats"), r"missing field\(s\) \['repeats'\]"),
        (lambda d: d["entries"][KEY]["noisy"].__setitem__(0, "no"), r"noisy\[0\]='no'"),
        (lambda d: d.update(complete="yes"), "'complete' must be true or false"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path: Path, mutate: Callable[[dict], object], message: str) -> None:
    doc = _doc()
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ProfilerError, match=message) as exc:
        LatencyTable.load(path)
    assert "bad.json" in str(exc.value)


def test_non_finite_numbers_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    doc = _doc()
    doc["entries"][KEY]["latency_ms"][0] = float("nan")
    path.write_text(json.dumps(doc))  # Python writes the non-standard token NaN
    assert "NaN" in path.read_text()
    with pytest.raises(ProfilerError, match="nan.json.*non-finite number NaN"):
        LatencyTable.load(path)


def test_add_measurement_replaces_and_keeps_sorted() -> None:
    t = make_table()
    t.add_measurement(KEY, 96, m(2.2))
    t.add_measurement(KEY, 72, m(1.4))
    assert t.widths(KEY) == [48, 72, 96, 144]
    assert t.latency(KEY, 96) == pytest.approx(2.2)
    with pytest.raises(ProfilerError, match="cannot mix"):
        t.add_measurement(KEY, None, m(1.0))


def test_set_entry_validates() -> None:
    t = make_table()
    t.set_entry("k", [8, 16], [1.0, 2.0], [0.1, 0.1], [0.01, 0.01], [False, False], [20, 20])
    assert t.latency("k", 12) == pytest.approx(1.5)
    with pytest.raises(ProfilerError, match="entry 'k'.*list lengths differ"):
        t.set_entry("k", [8, 16], [1.0], [0.1, 0.1], [0.01, 0.01], [False, False], [20, 20])


def test_saved_file_is_not_private(tmp_path: Path) -> None:
    path = make_table().save(tmp_path / "lut.json")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    make_table().save(path)
    assert path.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


def test_calibration_block_round_trips_and_is_validated(tmp_path):
    from profilers.errors import ProfilerError
    from profilers.lut import LatencyTable

    t = LatencyTable(
        "s",
        _calib_fp(),
        {},
        {
            "a": {
                "widths": [None],
                "latency_ms": [1.0],
                "spread_ms": [0.0],
                "cv": [0.0],
                "noisy": [False],
                "repeats": [5],
            }
        },
    )
    t.calibration = {"scale": 1.1, "offset_ms": 0.2, "samples": 20}
    t.save(tmp_path / "l.json")
    assert LatencyTable.load(tmp_path / "l.json").calibration == {"scale": 1.1, "offset_ms": 0.2, "samples": 20}
    doc = t.to_dict()
    doc["calibration"] = {"scale": -1, "offset_ms": 0}
    with pytest.raises(ProfilerError, match=r"calibration.scale=-1"):
        LatencyTable.from_dict(doc, "bad.json")
    doc["calibration"] = {"scale": 1.0, "offset_ms": 0, "ms_per_mweight": -0.2}  # would reward wider layers
    with pytest.raises(
        ProfilerError, match=r"bad.json: calibration.ms_per_mweight=-0.2; expected a finite number >= 0"
    ):
        LatencyTable.from_dict(doc, "bad.json")


def _calib_fp() -> dict:
    from profilers.fingerprint import current_fingerprint

    return current_fingerprint(threads=1, batch=1, resolution=32)
