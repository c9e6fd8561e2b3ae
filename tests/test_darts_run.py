"""The DARTS library pipelines without the CLI: search, evaluation report, training and bundle."""

from __future__ import annotations

import os

import pytest

from tests.test_darts_cli import write_cfg
from tfnas.darts.bundle import make_darts_bundle
from tfnas.darts.evaluate import evaluate_genotype
from tfnas.darts.network import build_eval_net, count_params_without_aux
from tfnas.darts.run import run_darts_search
from tfnas.darts.shapes import DeployShape, parse_deploy
from tfnas.darts.space import PUBLISHED, load_genotype
from tfnas.darts.train import run_darts_train
from tfnas.errors import ConfigError, TfnasError
from tfnas.utils.flops import count_macs
from tfnas.utils.io import read_json, read_yaml

QUIET = {"runtime.progress": False}
TRAIN_YAML = (
    "net: {C: 8, num_cells: 5}\ndata: {resolution: 16, num_samples: 32, batch_size: 8}\n"
    "train: {epochs: 2, max_steps_per_epoch: 2}\n"
)


def test_run_darts_search_returns_the_genotype_it_writes(tmp_path):
    lines: list[str] = []
    out = tmp_path / "run"
    done = run_darts_search(write_cfg(tmp_path), out, {**QUIET, "search.epochs": 1}, say=lines.append)
    assert done.out_dir == out and done.result.epochs_done == 1 and not done.result.early_stopped
    assert load_genotype(done.genotype_path) == done.result.genotype
    assert (out / "genotypes" / "epoch_000.json").exists()
    assert read_json(out / "config.json")["search"]["epochs"] == 1  # the override reached the run
    assert read_json(out / "timings.json") == done.result.timings
    assert done.budget == "" and lines == [
        f"DARTS search: method darts_1st, space s0, 1 epochs x 2 steps, data generated -> {out}"
    ]


def test_latency_aware_search_says_its_budget_before_it_starts(tmp_path):
    cfg = read_yaml(write_cfg(tmp_path, "latency_aware"))
    cfg["search"]["epochs"], cfg["hessian"]["every"], cfg["runtime"] = 1, 0, {"progress": False}
    lines: list[str] = []
    done = run_darts_search(cfg, tmp_path / "run", say=lines.append)
    lat = cfg["latency"]
    assert lines[1] == done.budget and done.budget.startswith(
        f"latency budget {lat['target_ms']:g} ms for the deployed net C={lat['deploy']['C']},"
    )
    assert done.result.genotype.meta["target_latency_ms"] == lat["target_ms"]


def test_run_folders_are_claimed_before_anything_runs(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(TfnasError, match="--force"):
        run_darts_search(write_cfg(tmp_path), theirs, QUIET)
    with pytest.raises(TfnasError, match="--force"):
        run_darts_train("DARTS_V1", None, theirs)
    assert sorted(os.listdir(theirs)) == ["notes.txt"]
    with pytest.raises(ConfigError, match="run folder"):
        run_darts_search(read_yaml(write_cfg(tmp_path)))


def test_evaluate_genotype_counts_what_a_direct_count_counts():
    lines: list[str] = []
    report = evaluate_genotype("pdarts", C=8, num_cells=5, say=lines.append)
    net = build_eval_net(PUBLISHED["PDARTS"], "cifar", C=8, num_cells=5)
    assert report == {"genotype": "pdarts", "setting": "cifar", "C": 8, "num_cells": 5, "resolution": 32,
                      "params_without_aux": count_params_without_aux(net),
                      "mult_adds": count_macs(net, (1, 3, 32, 32))}  # fmt: skip
    assert lines == [
        f"pdarts (cifar, C=8, 5 cells): {report['params_without_aux'] / 1e6:.3f} M params (no aux head), "
        f"{report['mult_adds'] / 1e6:.1f} M mult-adds at 32x32"
    ]
    imnet = evaluate_genotype("DARTS_V2", "imagenet", C=8, num_cells=5, say=lambda _: None)
    net = build_eval_net(PUBLISHED["DARTS_V2"], "imagenet", C=8, num_cells=5)
    assert imnet["resolution"] == 224 and imnet["mult_adds"] == count_macs(net, (1, 3, 224, 224))


def test_evaluate_genotype_exports_where_asked_and_measures_without_leaving_files(tmp_path, monkeypatch):
    lines: list[str] = []
    onnx = tmp_path / "net.onnx"
    report = evaluate_genotype("DARTS_V1", C=8, num_cells=5, resolution=16, onnx=onnx, say=lines.append)
    assert onnx.is_file() and report["onnx"] == str(onnx) and report["parity_max_abs_diff"] < 1e-4
    assert "latency_ms" not in report and lines[1].startswith(f"ONNX: {onnx} (checker ok")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    lines.clear()
    timed = evaluate_genotype("DARTS_V1", C=8, num_cells=5, resolution=16, measure=True, say=lines.append)
    assert timed["onnx"] is None and os.listdir(work) == []
    assert timed["latency_ms"]["value_ms"] > 0 and len(timed["latency_ms"]["rounds"]) >= 5  # unsteady ones repeated
    assert lines[1].startswith("ONNX: (temporary)") and lines[2].startswith("latency (ort, 1 thread(s), batch 1): ")


def test_run_darts_train_defaults_its_folder_and_reports_the_evaluation_network(tmp_path, monkeypatch):
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    monkeypatch.chdir(tmp_path)
    report = run_darts_train("darts_v1", "train.yaml", overrides={**QUIET, "train.epochs": 1})
    out = tmp_path / "runs" / "darts_train" / "darts_v1"
    assert read_json(out / "train_report.json")["test_acc"] == report["test_acc"]
    assert len(report["history"]) == 1  # the override beat the file's 2 epochs
    net = build_eval_net(PUBLISHED["DARTS_V1"], "cifar", 10, C=8, num_cells=5)
    assert report["params_without_aux"] == count_params_without_aux(net)
    assert load_genotype(out / "genotype.json") == PUBLISHED["DARTS_V1"]


def test_make_darts_bundle_writes_the_graphs_it_says(tmp_path):
    from profilers.bundle import load_manifest

    lines: list[str] = []
    out = make_darts_bundle("s2", "C=4, num_cells=3,resolution=8", tmp_path / "b", say=lines.append)
    shape = DeployShape(C=4, num_cells=3, resolution=8)
    assert out == tmp_path / "b" and lines == [
        f"bundle: {out} ({len(load_manifest(out).entries)} graphs, deploy {shape})"
    ]
    assert read_json(out / "manifest.json")["meta"]["deploy"] == shape.to_dict()


def test_parse_deploy():
    assert parse_deploy("") == DeployShape() and parse_deploy("batch=2").batch == 2
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_deploy("C")
    with pytest.raises(ConfigError, match="C must be an integer"):
        parse_deploy("C=x")
    with pytest.raises(ConfigError, match="colour"):
        parse_deploy("colour=1")
