"""The MBV2 library calls behind ``tfnas predict`` and ``tfnas measure``, called without the CLI."""

from __future__ import annotations

import types

import pytest

from tfnas.errors import LatencyTableError, TfnasError
from tfnas.latency.calibrate import Calibration
from tfnas.latency.table import open_table
from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.keys import arch_entries
from tfnas.mbv2.measure import measure_arch
from tfnas.mbv2.predict import predict, predict_report


def test_predict_report_rows_sum_to_the_raw_total_and_calibrate_to_predict(files):
    table = open_table(files["lut"])
    table.replace_calibration({"scale": 1.25, "offset_ms": 0.5, "ms_per_mweight": 0.0})
    table.save(files["lut"])
    arch = load_arch(files["arch"])
    r = predict_report(files["arch"], files["lut"])
    assert [(k, w) for k, w, _ in r.rows] == arch_entries(arch)  # stem, first block, every layer, head
    assert sum(ms for _, _, ms in r.rows) == pytest.approx(r.sum_ms, rel=1e-12)
    assert r.sum_ms == pytest.approx(predict(arch, table, calibrated=False), rel=1e-12)
    assert r.predicted_ms == pytest.approx(Calibration(1.25, 0.5).total(r.sum_ms), rel=1e-12)
    assert r.predicted_ms == pytest.approx(predict(arch, table), rel=1e-12)
    raw = predict_report(files["arch"], files["lut"], raw=True)
    assert raw.calibration is None and raw.predicted_ms == pytest.approx(r.sum_ms, rel=1e-12)
    doc = r.to_dict()
    assert doc["predicted_ms"] == r.predicted_ms and len(doc["layers"]) == len(r.rows)


def test_predict_report_checks_the_table_against_the_space(files):
    table = open_table(files["lut"])
    table.remove(next(k for k in table.keys() if k.startswith("ir|")))
    table.save(files["dir"] / "partial.json")
    with pytest.raises(LatencyTableError, match="lacks 2 entries"):
        predict_report(files["arch"], files["dir"] / "partial.json")


@pytest.fixture
def fake_runtime(monkeypatch):
    """Every network times 1.5 ms and the reference network 0.5 ms: a quiet host, no real runtime."""
    import tfnas.latency.measure as measure_mod

    monkeypatch.setattr(
        measure_mod, "prepare_timer", lambda net, rt, workdir: lambda p: types.SimpleNamespace(latency_ms=1.5)
    )
    monkeypatch.setattr(
        measure_mod, "reference_for", lambda rt, workdir: lambda p: types.SimpleNamespace(latency_ms=0.5)
    )


def test_measure_arch_returns_the_commands_json(files, fake_runtime):
    m = measure_arch(files["arch"], threads=1, rounds=3, say=lambda s: None)
    doc = m.doc
    assert doc["arch"] == str(files["arch"]) and doc["backend"] == "ort" and doc["precision"] == "fp32"
    assert doc["resolution"] == load_arch(files["arch"]).resolution and doc["quantization"] is None
    assert doc["clean"] and doc["raw_ms"] == 1.5 and len(doc["rounds"]) == 3
    # no table: converted with the reference's quiet time seen in this measurement (0.5 ms), i.e. 3 x 0.5 ms
    assert doc["reference_seen_ms"] == 0.5 and doc["latency_ms"] == pytest.approx(1.5)
    assert m.figure.value_ms == doc["latency_ms"] and "predicted_ms" not in doc
    assert m.shape.startswith("ort fp32, 1 thread(s), batch 1")


def test_measure_arch_with_a_table_adds_its_prediction_and_error(files, fake_runtime):
    seen = []
    m = measure_arch(files["arch"], rounds=3, lut=files["lut"], allow_foreign=True, say=seen.append)
    pred = predict(load_arch(files["arch"]), open_table(files["lut"]))
    assert seen and seen[0].startswith("table device: ")
    assert m.doc["predicted_ms"] == pytest.approx(pred, rel=1e-12) and m.doc["lut"] == str(files["lut"])
    assert m.doc["error_pct"] == pytest.approx((pred - m.doc["latency_ms"]) / m.doc["latency_ms"] * 100)


def test_measure_arch_pools_measurements_and_states_the_spread_between_them(files, monkeypatch):
    """Two measurements (each would be a new process) of one network that moved 10% between them: the figure
    is their mean and its +/- covers the move, though each measurement's own rounds agreed exactly."""
    import tfnas.latency.measure as measure_mod

    speeds = iter([1.5, 1.65])

    def prepare(net, rt, workdir):
        ms = next(speeds)
        return lambda p: types.SimpleNamespace(latency_ms=ms)

    monkeypatch.setattr(measure_mod, "FRESH_PROCESS", False)  # the fakes live in this process
    monkeypatch.setattr(measure_mod, "prepare_timer", prepare)
    monkeypatch.setattr(
        measure_mod, "reference_for", lambda rt, workdir: lambda p: types.SimpleNamespace(latency_ms=0.5)
    )
    m = measure_arch(files["arch"], rounds=3, say=lambda s: None, measurements=2)
    assert m.doc["measurements_ms"] == pytest.approx([1.5, 1.65])
    assert m.doc["latency_ms"] == pytest.approx(1.575) and m.doc["uncertainty_ms"] >= 0.075
    assert len(m.doc["rounds"]) == 6 and "2 measurements" in m.figure.describe()
    with pytest.raises(TfnasError, match="--measurements 0: expected an integer >= 1"):
        measure_arch(files["arch"], measurements=0)
