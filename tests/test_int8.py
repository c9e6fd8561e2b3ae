"""INT8: quantized bundle graphs, precision as part of a table's identity, int8 timings that quantize, and the
quantized export with its agreement check. Tiny space and shapes; no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from profilers.backends.ort import OrtBackend
from profilers.quantize import (
    QuantSettings,
    default_settings,
    is_quantized_file,
    needs_reduce_range,
    quantize_graph,
    quantized_summary,
)
from tests.test_latency_table import make_table
from tfnas.cli import main
from tfnas.errors import LatencyTableError
from tfnas.mbv2.arch import Architecture


def as_int8(table):
    """``table`` as an INT8 table of this machine (what `tfnas profile --precision int8` records)."""
    table.fingerprint["precision"] = "int8"
    table.fingerprint["quantization"] = default_settings().to_dict()
    return table


@pytest.fixture
def timed_graphs(monkeypatch):
    """Every graph ONNX Runtime is asked to time, as (precision, holds Q/DQ nodes)."""
    seen: list[tuple[str, bool]] = []
    refs: list[str] = []  # the precision each reference timer was prepared at
    real = OrtBackend._prepare

    def spy(self, path, input_shape):
        from profilers.reference import REFERENCE_NAME

        if REFERENCE_NAME in str(path):  # the drift reference: timed at the candidate's precision (issue 24)
            assert is_quantized_file(path) == (self.precision == "int8")
            refs.append(self.precision)
            return real(self, path, input_shape)
        seen.append((self.precision, is_quantized_file(path)))
        if self.precision == "int8":
            summary = quantized_summary(path)
            assert summary["ops"].get("QuantizeLinear", 0) > 0 and summary["initializers"].get("int8", 0) > 0
        return real(self, path, input_shape)

    monkeypatch.setattr(OrtBackend, "_prepare", spy)
    return seen


@pytest.fixture
def tiny_bundle(tiny_space, tmp_path):
    from tfnas.mbv2.bundle import write_bundle

    sigs = _sigs(tiny_space)
    keys = {next(s.key for s in sigs if s.width_range is None), next(s.key for s in sigs if s.width_range)}
    return write_bundle(tiny_space, tmp_path / "bundle", 1, 32, "sparse", keys=keys, progress=False, intervals=1)


def _sigs(space):
    from tfnas.mbv2.keys import space_signatures

    return space_signatures(space, 32)


FAST = {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "floor_repeats": 3, "max_time_s": 0.01, "passes": 2,
        "remeasure_attempts": 0, "statistic": "p10"}  # fmt: skip


def test_an_int8_bundle_graph_is_really_quantized(tiny_bundle, tmp_path, timed_graphs):
    """Each graph is quantized by ORT's static QDQ quantizer (int8 weights, Q/DQ nodes) before it is timed,
    once for both passes, and the table says int8 and how it was quantized."""
    from profilers.bundle import load_manifest, set_manifest_precision
    from profilers.run import profile_bundle
    from profilers.timing import TimingProtocol

    set_manifest_precision(tiny_bundle, "int8")
    manifest = load_manifest(tiny_bundle)
    assert (manifest.precision, manifest.profile_precision) == ("fp32", "int8")  # fp32 graphs, profiled at int8
    lut = profile_bundle(tiny_bundle, tmp_path / "t-int8.json", "ort", 1, TimingProtocol(**FAST), progress=False,
                         quantize_workers=1, retime_noisy=False)  # fmt: skip
    assert lut.fingerprint["precision"] == "int8" and lut.complete
    assert lut.fingerprint["quantization"] == default_settings().to_dict()
    assert timed_graphs and all(p == "int8" and q for p, q in timed_graphs)
    assert len(timed_graphs) == 2 * len(manifest.entries)
    # the drift reference timed between the graphs is int8 too (the fixture checks it was quantized), and the
    # table records it under the int8 name, so later int8 measurements convert with it
    from profilers.reference import reference_name

    assert lut.reference["name"] == reference_name("int8")

    entry = next(e for e in manifest.entries if e.width is not None)  # one graph, quantized as the profiler does
    from profilers.weights import materialize

    q = quantize_graph(materialize(entry.path, tmp_path), entry.input_shape, tmp_path / "q.onnx")
    summary = quantized_summary(q)
    assert summary["ops"]["QuantizeLinear"] >= 1 and summary["ops"]["DequantizeLinear"] >= 3
    assert summary["initializers"]["int8"] >= 3  # the convolutions' weights (per channel)
    assert "Identity" not in summary["ops"]  # shared biases un-shared: every Conv is quantized


def test_an_fp32_bundle_stays_fp32_and_resuming_at_another_precision_is_refused(tiny_bundle, tmp_path, timed_graphs):
    from profilers.errors import ProfilerError
    from profilers.run import profile_bundle
    from profilers.timing import TimingProtocol

    out = tmp_path / "t.json"
    lut = profile_bundle(tiny_bundle, out, "ort", 1, TimingProtocol(**FAST), progress=False)
    assert lut.fingerprint["precision"] == "fp32" and "quantization" not in lut.fingerprint
    assert timed_graphs and not any(q for _, q in timed_graphs)
    with pytest.raises(ProfilerError, match="precision"):
        profile_bundle(tiny_bundle, out, "ort", 1, TimingProtocol(**FAST), progress=False, precision="int8")


def test_reduce_range_follows_the_isa():
    assert needs_reduce_range(["avx", "avx2", "fma"])  # AVX2: u8s8 sums saturate int16
    assert needs_reduce_range(["avx2", "avx512f", "avx512bw"])  # AVX-512 without VNNI too
    assert not needs_reduce_range(["avx2", "avx512f", "avx512bw", "avx512-vnni"])
    assert not needs_reduce_range(["neon", "dotprod"], "arm64")
    s = default_settings({"cpu_isa": ["avx2", "fma"], "cpu_arch": "x86_64"})
    assert s.reduce_range and s.per_channel and (s.activations, s.weights, s.format) == ("uint8", "int8", "QDQ")
    assert QuantSettings.from_dict(s.to_dict()) == s


def test_lut_auto_with_int8_never_takes_an_fp32_table(tiny_space, tmp_path):
    from tfnas.latency.validate import Validation
    from tfnas.mbv2.select import choose_table, matching_tables

    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    shipped.mkdir()
    fp32 = make_table(tiny_space)
    fp32.calibration = {"scale": 1.0, "offset_ms": 0.0}
    fp32.save(shipped / "a_fp32.json")
    assert [t.source for t in matching_tables(tiny_space, 32, 1, 1, [shipped])] == [str(shipped / "a_fp32.json")]
    assert matching_tables(tiny_space, 32, 1, 1, [shipped], precision="int8") == []

    def ok(table):
        assert table.fingerprint["precision"] == "int8", "validated an fp32 table for an int8 budget"
        return Validation(table.source, "", True, "", verdict="holds")

    built: list[Path] = []
    choice = choose_table(tiny_space, 32, shipped=shipped, cache=cache, validate_fn=ok, build_fn=built.append,
                          say=print, precision="int8")  # fmt: skip
    assert choice.how == "profiled" and built == [choice.path] and choice.path.name.endswith("-int8.json")

    int8 = as_int8(make_table(tiny_space))
    int8.calibration = {"scale": 1.0, "offset_ms": 0.0}
    int8.save(shipped / "b_int8.json")
    choice = choose_table(tiny_space, 32, shipped=shipped, cache=cache, validate_fn=ok, build_fn=built.append,
                          say=print, precision="int8")  # fmt: skip
    assert choice.how == "shipped" and choice.path.name == "b_int8.json"
    choice = choose_table(tiny_space, 32, shipped=shipped, cache=cache, validate_fn=lambda t: ok(as_int8(t)),
                          build_fn=built.append, say=print)  # fmt: skip
    assert choice.path.name == "a_fp32.json"  # fp32 (the default) takes the fp32 table


def test_a_table_of_another_precision_is_refused_where_a_precision_is_asked(tiny_space, tmp_path):
    from tests.test_search_tfnas import tiny_config
    from tfnas.latency.table import open_table
    from tfnas.mbv2.keys import SpaceNeeds
    from tfnas.mbv2.search.build import build_latency_model
    from tfnas.mbv2.search.config import resolve_config

    path = make_table(tiny_space).save(tmp_path / "fp32.json")
    with pytest.raises(LatencyTableError, match="holds fp32 latencies, but int8"):
        open_table(path, SpaceNeeds(tiny_space), precision="int8")
    cfg = tiny_config(tmp_path, tiny_space)
    build_latency_model(resolve_config(cfg), tiny_space)  # no precision stated: the table's own
    with pytest.raises(LatencyTableError, match="int8"):
        build_latency_model(resolve_config({**cfg, "precision": "int8"}), tiny_space)


@pytest.fixture
def space_files(request):
    made = request.getfixturevalue("files")  # tests/test_latency_cli.py's: a tiny space, an architecture, a table
    return made["space"], made["arch"]


def test_measure_validate_calibrate_of_an_int8_table_quantize_every_network(
    tiny_space, space_files, tmp_path, timed_graphs, capsys
):
    from tfnas.latency.measure import measure_on_table_device
    from tfnas.mbv2.calibrate import calibrate
    from tfnas.mbv2.measure import ArchNetwork
    from tfnas.mbv2.validate import validate_table

    space_yaml, arch_path = space_files
    int8 = as_int8(make_table(tiny_space))
    lut = int8.save(tmp_path / "t-int8.json")
    result = validate_table(int8, tiny_space, n=3, rounds=2)
    assert result.precision == "int8" and len(result.measured_ms) == 3
    calibrate(int8, tiny_space, n=3, rounds=1, progress=False)
    assert "int8" in int8.calibration["method"]
    assert (
        measure_on_table_device(ArchNetwork(Architecture.uniform(tiny_space, "k3_e3")), int8, rounds=1)["precision"]
        == "int8"
    )
    assert (
        main(["measure", str(arch_path), "--lut", str(lut), "--rounds", "1", "--json", str(tmp_path / "m.json")]) == 0
    )
    assert json.loads((tmp_path / "m.json").read_text())["precision"] == "int8"
    assert timed_graphs and all(p == "int8" and q for p, q in timed_graphs)  # each one quantized before timing
    n = len(timed_graphs)
    assert main(["measure", str(arch_path), "--lut", str(lut), "--precision", "fp32", "--rounds", "1"]) == 2
    assert "holds int8 latencies, but fp32" in capsys.readouterr().err and len(timed_graphs) == n  # nothing timed

    fp32 = make_table(tiny_space)  # an fp32 table's networks stay fp32
    validate_table(fp32, tiny_space, n=3, rounds=2)
    assert all(p == "fp32" and not q for p, q in timed_graphs[n:])


def test_quantized_export_round_trips_with_the_agreement_check(space_files, tmp_path, capsys):
    import onnxruntime as ort

    _, arch_path = space_files
    out = tmp_path / "m.onnx"
    argv = ["export", str(arch_path), "--out", str(out), "--precision", "int8", "--calibration-data", "generated",
            "--calibration-samples", "8", "--held-out", "40", "--num-samples", "200", "--num-classes", "4",
            "--rounds", "1"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["precision"] == "int8" and report["onnx"] == str(out) and Path(report["onnx_fp32"]).is_file()
    assert report["quantized_graph"]["quantize_nodes"] > 0 and report["quantized_graph"]["initializers"]["int8"] > 0
    held = report["held_out"]
    assert held["samples"] == 40 and 0.0 <= held["top1_agreement"] <= 1.0
    assert 0.0 <= held["fp32_accuracy"] <= 1.0 and 0.0 <= held["int8_accuracy"] <= 1.0
    assert report["latency"]["int8_ms"] > 0 and report["latency"]["fp32_ms"] > 0
    assert "top-1 agreement" in captured.err
    assert report["quantization"]["per_channel"] and report["quantization"]["activations"] == "uint8"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # it round-trips through ORT
    y = sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert y.shape == (1, 4) and np.isfinite(y).all()
    assert is_quantized_file(out) and not is_quantized_file(report["onnx_fp32"])


def test_int8_export_needs_calibration_data(space_files, tmp_path, capsys):
    _, arch_path = space_files
    assert main(["export", str(arch_path), "--out", str(tmp_path / "m.onnx"), "--precision", "int8"]) == 2
    assert "--calibration-data" in capsys.readouterr().err


def test_tfnas_profile_int8_quantizes_while_exporting_and_names_the_precision(space_files, tmp_path, capsys):
    space_yaml, _ = space_files
    lut = tmp_path / "tiny-int8.json"
    argv = ["profile", "--space", str(space_yaml), "--out", str(lut), "--precision", "int8", "--max-time", "0.01",
            "--intervals", "1", "--quiet", "--work", str(tmp_path / "bundle"), "--quantize-workers", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "(int8)" in capsys.readouterr().out
    doc = json.loads(lut.read_text())
    assert doc["fingerprint"]["precision"] == "int8" and doc["fingerprint"]["quantization"]["per_channel"]
    build = doc["meta"]["builds"][-1]
    assert build["quantize"]["graphs"] == build["points_measured"] > 0
    assert 0 <= build["quantize"]["while_exporting"] <= build["quantize"]["graphs"]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["precision"] == "fp32" and manifest["profile_precision"] == "int8"
    # int8 kernels compute multiples of 16 fastest and pad nothing: the table's grid (and so the widths a search
    # and a validation derive from it) is aligned to 16, not fp32's 4
    assert doc["meta"]["bundle_meta"]["grid"] == {"name": "sparse", "align": 16, "block": 16, "intervals": 1}
    assert not list((tmp_path / "bundle").rglob("*.onnx.tmp.onnx"))


def test_an_int8_measurement_times_a_reference_of_its_own_precision(tiny_space, tmp_path, monkeypatch):
    """Spells hit int8 kernels harder than fp32 ones (issue 24: an int8 net 1.32x, the fp32 reference 1.13x, an
    int8 reference 1.33x), so an int8 runtime times the reference quantized with its recipe, and a table's
    recorded reference counts only when it is of the table's precision."""
    from profilers.device import DeviceMatch
    from profilers.reference import REFERENCE_NAME, reference_record
    from tfnas.latency import measure as m

    prepared: list[tuple[str, bool]] = []
    real = OrtBackend._prepare

    def spy(self, path, input_shape):
        prepared.append((self.precision, is_quantized_file(path)))
        return real(self, path, input_shape)

    monkeypatch.setattr(OrtBackend, "_prepare", spy)
    for precision, quant in (("fp32", None), ("int8", default_settings())):
        m.reference_for(m.Runtime("ort", 1, 1, precision, quant), tmp_path / precision)
    assert prepared == [("fp32", False), ("int8", True)]

    monkeypatch.setattr(m, "device_match", lambda table, threads=None: DeviceMatch([], []))  # this machine's
    table = as_int8(make_table(tiny_space))
    table.set_reference(reference_record(0.5, 1, "ort", "profile", "p10"))  # an fp32 reference: not this table's
    assert table.reference["name"] == REFERENCE_NAME and m.table_reference_ms(table) is None
    table.set_reference(m.reference_record(0.3, m.table_runtime(table), "calibration", "p10"))
    assert table.reference["name"] == f"{REFERENCE_NAME}-int8" and m.table_reference_ms(table) == 0.3
