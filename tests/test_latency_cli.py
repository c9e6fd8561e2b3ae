"""CLI exit codes and messages of bundle / profile / predict / measure / calibrate on good and bad input."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.test_latency_table import make_table
from tfnas.cli import main


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_prints_layers_and_total(files, capsys):
    rc, out, err = run_cli(capsys, "predict", "--lut", files["lut"], files["arch"])
    assert rc == 0, err
    assert "predicted latency" in out and "ir|k3_e6_se" in out and "sum of ops" in out


def write_arch(files, mutate) -> str:
    doc = json.loads(json.dumps(files["arch_doc"]))
    mutate(doc)
    path = files["dir"] / "bad_arch.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["stages"][0]["layers"][0].update(op="k7_e9"), "unknown op"),
        (lambda d: d["stages"][1]["layers"][0].update(width=10_000), "width = 10000: expected an integer in"),
        (lambda d: d["stages"][1].update(depth=7), "depth = 7"),
    ],
)
def test_bad_architectures_exit_2_with_a_message(files, capsys, mutate, message):
    for cmd in (["predict", "--lut", files["lut"]], ["measure"]):
        rc, out, err = run_cli(capsys, *cmd, write_arch(files, mutate))
        assert rc == 2 and message in err and "Traceback" not in err


def test_malformed_json_arch(files, capsys):
    bad = files["dir"] / "broken.json"
    bad.write_text('{"format": "tfnas.arch", "version": 1, "stages": [')
    rc, _, err = run_cli(capsys, "predict", "--lut", files["lut"], bad)
    assert rc == 2 and "not valid JSON" in err


def test_lut_of_another_resolution(files, tiny_space, capsys):
    other = make_table(tiny_space, resolution=64).save(files["dir"] / "lut64.json")
    rc, _, err = run_cli(capsys, "predict", "--lut", other, files["arch"])
    assert rc == 2 and "resolution 64" in err and "resolution 32" in err


def test_lut_missing_entries_lists_them(files, tiny_space, capsys):
    table = make_table(tiny_space)
    gone = [k for k in table.keys() if "k3_e6_se" in k][0]
    table.remove(gone)
    path = table.save(files["dir"] / "partial.json")
    rc, _, err = run_cli(capsys, "predict", "--lut", path, files["arch"])
    assert rc == 2 and gone in err and "lacks" in err


def test_corrupted_lut(files, capsys):
    bad = files["dir"] / "corrupt.json"
    bad.write_text(files["lut"].read_text()[:100])
    rc, _, err = run_cli(capsys, "predict", "--lut", bad, files["arch"])
    assert rc == 2 and "not valid JSON" in err


def test_unknown_space(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "bundle", "--space", "no_such_space", "--out", tmp_path / "b")
    assert rc == 2 and "unknown search space" in err


def test_profile_measure_calibrate_end_to_end(files, capsys):
    lut = files["dir"] / "profiled.json"
    profile = ("profile", "--space", files["space"], "--out", lut, "--max-time", "0.02", "--intervals", "2")
    profile += ("--quiet", "--work", files["dir"] / "bundle")
    rc, out, err = run_cli(capsys, *profile)
    assert rc == 0, err
    assert "signatures" in out and lut.exists()
    before = json.loads(lut.read_text())
    rc, out, err = run_cli(capsys, *profile)
    after = json.loads(lut.read_text())
    assert rc == 0 and after["created"] == before["created"]  # resumed, not restarted
    assert after["entries"] == before["entries"]  # nothing re-measured
    # provenance is append-only: the no-op re-run adds a record and keeps the real build time
    assert after["meta"]["build_s"] == before["meta"]["build_s"] > 0
    assert after["meta"]["bundle_s"] == before["meta"]["bundle_s"]
    assert [b["points_measured"] for b in after["meta"]["builds"]] == [
        before["meta"]["builds"][0]["points_measured"],
        0,
    ]
    rc, out, err = run_cli(
        capsys, "measure", files["arch"], "--lut", lut, "--rounds", "3", "--json", files["dir"] / "m.json"
    )
    assert rc == 0, err
    assert "measured latency" in out and "drift-cancelled: median over" in out and "predicted" in out
    doc = json.loads((files["dir"] / "m.json").read_text())
    rounds = sorted(r["value"] for r in doc["rounds"][:3])  # each round's p10, the table's statistic
    assert len(doc["rounds"]) >= 3 and doc["raw_ms"] == rounds[1] > 0 and "p10" in doc["statistic"]
    # the figure it acts on: the median ratio to the reference, converted with the time the profile recorded
    ratios = sorted(r["value"] / ((r["ref_before"] + r["ref_after"]) / 2) for r in doc["rounds"] if r["steady"])
    ref_ms = json.loads(lut.read_text())["reference"]["ms"]
    if doc["reference_source"] != "table":  # the profile's reference was >8% slow: taken in a spell, replaced
        assert "slow spell" in doc["reference_source"] and doc["reference_ms"] < ref_ms * 0.92
        ref_ms = doc["reference_ms"]
    assert doc["reference_ms"] == ref_ms
    assert doc["latency_ms"] == pytest.approx(ratios[len(ratios) // 2] * ref_ms, rel=1e-9) or len(ratios) % 2 == 0

    from tfnas.commands import calibrate as cmd  # not necessarily registered in the CLI yet

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args(
        ["--lut", str(lut), "--space", str(files["space"]), "--samples", "3", "--quiet", "--in-place"]
    )
    assert cmd.run(args) == 0
    doc = json.loads(lut.read_text())
    assert doc["calibration"]["samples"] == 3 and doc["calibration"]["scale"] > 0
