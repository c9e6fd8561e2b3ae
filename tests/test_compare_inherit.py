"""Inherited accuracy: a network scored on its slice of a search's supernet, and the Kendall tau of those scores
against stand-alone training, as ``tfnas compare`` reports them (issue 22, item 4)."""

from __future__ import annotations

import csv
import json
import math
import random
import shutil

import pytest
import torch
import yaml

from tests.conftest import TINY_SPACE
from tests.test_search_tfnas import _target, tiny_config
from tfnas.data import evaluation_loader
from tfnas.errors import ConfigError, TfnasError
from tfnas.mbv2.arch import load_arch
from tfnas.mbv2.search.inherit import inherited_accuracy, is_search_run, kendall_tau, load_supernet
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.space import space_from_dict


# ---- Kendall tau-b --------------------------------------------------------------------------------------------
def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # by hand: pairs (0,1) (0,2) (0,3) concordant, (1,3) discordant, (1,2) tied in x, (2,3) tied in y:
    # (3 - 1) / sqrt(5 untied in x * 5 untied in y) = 0.4
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    # one swap among four: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # a constant scoring ranks nothing
    assert math.isnan(kendall_tau([1], [1]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])


def test_kendall_tau_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(2, 12)
        xs = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(n)]
        ys = [rng.choice([0.5, 0.6, 0.7]) for _ in range(n)]
        ref = stats.kendalltau(xs, ys).statistic  # tau-b by default
        ours = kendall_tau(xs, ys)
        assert (math.isnan(ref) and math.isnan(ours)) or ours == pytest.approx(ref)


# ---- a real tiny search with shared op weights ----------------------------------------------------------------
@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inherit")
    space = space_from_dict(TINY_SPACE, "tiny.yaml")
    cfg = tiny_config(tmp, space, op_weights="shared")
    cfg["target_ms"] = _target(cfg, space, 0.4)
    run = tmp / "run"
    TFNASSearch(cfg, run).run()
    return run


def _by_hand(model, split, arch, batch_size, seed):
    """forward_arch on every held-out batch, the choice spelled out from the architecture file."""
    names = list(model.op_names)
    layers = [c for stage in arch.stages for c in stage]
    ops, widths = [names.index(c.op) for c in layers], [c.width for c in layers]
    correct = total = 0
    with torch.no_grad():
        for x, y in evaluation_loader(split, batch_size, seed=seed):
            correct += int((model.forward_arch(x, ops, widths, list(arch.depths)).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def test_inherited_accuracy_is_the_architectures_slice_of_the_supernet(search_run):
    model, cfg, data = load_supernet(search_run, device="cpu")
    assert cfg.search.op_weights == "shared" and is_search_run(search_run)
    arch = load_arch(search_run / "arch.json", model.space)
    bs, seed = cfg.search.batch_size, cfg.seed
    acc = inherited_accuracy(model, data.held_out, arch, bs, seed)
    assert 0.0 <= acc <= 1.0
    assert acc == _by_hand(model, data.held_out, arch, bs, seed)
    # the same number the search reported for its derived network's slice (same split, batches and weights)
    report = json.loads((search_run / "report.json").read_text())
    assert acc == pytest.approx(report["derived_slice_held_out_acc"], abs=1.5 / len(data.held_out))


def test_a_folder_without_a_supernet_is_named(search_run, tmp_path):
    with pytest.raises(ConfigError, match=str(search_run / "arch.json")):
        load_supernet(search_run / "arch.json")  # an architecture file
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(search_run / "config.json", bare / "config.json")
    with pytest.raises(TfnasError, match=str(bare / "checkpoints" / "last.pt")):
        load_supernet(bare)
    with pytest.raises(ConfigError, match=str(tmp_path / "config.json")):
        load_supernet(tmp_path)
    assert not is_search_run(bare) and not is_search_run(search_run / "arch.json")


def test_compare_cli_reports_inherited_accuracy_and_tau(search_run, tmp_path, capsys, monkeypatch):
    """The real supernet scores every network; stand-alone training is stubbed with distinct top-1s (one
    training step would leave every network at chance, and the tau undefined)."""
    from tfnas.cli import main

    standalone = {"run": 0.5, "random_00": 0.3, "random_01": 0.4, "uniform_k3_e3": 0.2}
    monkeypatch.setattr(
        "tfnas.mbv2.search.compare._train_one", lambda name, *a: {"test_acc": standalone[name], "params": 1}
    )
    cfg = tmp_path / "compare.yaml"
    cfg.write_text(yaml.safe_dump({"num_samples": 32, "batch_size": 16, "uniform": ["k3_e3"]}))
    out = tmp_path / "cmp"
    argv = ["compare", str(search_run), "--config", str(cfg), "--data", "shapes", "--resolution", "8",
            "--random", "2", "--jobs", "1", "--no-measure", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    nets = result["networks"]
    assert [n["name"] for n in nets] == list(standalone)
    assert all(0.0 <= n["inherited_acc"] <= 1.0 for n in nets)
    assert result["supernet"] == str(search_run.resolve()) and result["kendall_tau_n"] == 4
    tau = kendall_tau([n["inherited_acc"] for n in nets], list(standalone.values()))
    assert result["kendall_tau_inherited_vs_standalone"] == pytest.approx(tau)  # not None: the scores differ
    assert f"supernet ranking: Kendall tau {tau:.3f} over 4 networks (inherited vs stand-alone top-1)" in text
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["inherited_acc"]) for r in rows] == [n["inherited_acc"] for n in nets]
    scored = json.loads((out / "inherited.json").read_text())["accs"]
    assert scored == {n["name"]: n["inherited_acc"] for n in nets}
    # the searched network's score is its slice's held-out accuracy, as the search reported it
    report = json.loads((search_run / "report.json").read_text())
    assert scored["run"] == pytest.approx(report["derived_slice_held_out_acc"], abs=0.05)

    # a rerun reuses inherited.json: the supernet is not loaded again
    def no_reload(*a, **k):
        raise AssertionError("the supernet was loaded again")

    monkeypatch.setattr("tfnas.mbv2.search.compare.load_supernet", no_reload)
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["networks"] == nets
    assert "supernet ranking" in capsys.readouterr().out
    # an architecture file (no supernet): the fields are there, and None
    standalone["arch"] = standalone["run"]
    assert main([*argv[:1], str(search_run / "arch.json"), *argv[2:-1], str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert plain["supernet"] is None and plain["kendall_tau_inherited_vs_standalone"] is None
    assert plain["kendall_tau_n"] == 0 and all(n["inherited_acc"] is None for n in plain["networks"])
    assert "supernet ranking" not in capsys.readouterr().out


def test_compare_runs_defaults_to_the_searchs_table_and_supernet(search_run, tmp_path, monkeypatch):
    """The library call behind ``tfnas compare``: no table or supernet given, both come from the search run."""
    from tfnas.mbv2.search.compare import CompareConfig, compare_runs

    seen = {}

    def fake_compare(searched, table_path, out_dir, cfg, target_ms=None, say=print, supernet=None):
        seen.update(names=[s[0] for s in searched], table=table_path, supernet=supernet, out=out_dir)
        return {"networks": []}

    monkeypatch.setattr("tfnas.mbv2.search.compare.compare", fake_compare)
    arch_lut = json.loads((search_run / "arch.json").read_text())["meta"]["lut"]
    compare_runs([search_run], tmp_path / "cmp", CompareConfig())
    assert seen == {"names": ["run"], "table": arch_lut, "supernet": search_run, "out": tmp_path / "cmp"}
    assert (tmp_path / "cmp" / ".tfnas-run").exists()  # claimed like every run folder
    compare_runs([search_run / "arch.json"], tmp_path / "cmp2", CompareConfig(), table_path="other.json")
    assert seen["supernet"] is None and seen["table"] == "other.json"  # an architecture file has no supernet
    bare = json.loads((search_run / "arch.json").read_text())
    bare["meta"].pop("lut")
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    with pytest.raises(ConfigError, match="names no latency table; pass --lut"):
        compare_runs([tmp_path / "bare.json"], tmp_path / "cmp3", CompareConfig())


def test_tfnas_train_init_from_starts_at_the_supernets_slice(search_run, tmp_path):
    """``tfnas train ARCH --init-from RUN``: the derived network starts as its slice of the supernet."""
    from tfnas.cli import main
    from tfnas.mbv2.search.inherit import slice_network

    model, cfg, data = load_supernet(search_run, device="cpu")
    arch = load_arch(search_run / "arch.json", model.space)
    net = slice_network(model, arch, data.num_classes)
    assert torch.equal(net.stem[0].weight, model.stem[0].weight)  # inherited, not freshly initialised
    out = tmp_path / "t"
    rc = main(["train", str(search_run / "arch.json"), "--init-from", str(search_run), "--data", cfg.data.source,
               "--resolution", str(cfg.data.resolution), "--num-samples", "32", "--batch-size", "16", "--epochs", "1",
               "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["init_from"] == str(search_run)
