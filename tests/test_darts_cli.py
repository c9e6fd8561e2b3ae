"""`tfnas darts` end to end on generated data: search, resume, genotypes, eval (ONNX), train."""

from __future__ import annotations

import json

import pytest
import torch

from tfnas.cli import main
from tfnas.darts.search import DartsSearch
from tfnas.darts.space import get_genotype, load_genotype
from tfnas.utils.io import read_yaml, repo_root

TINY = {
    "supernet": {"C": 8, "num_cells": 3},
    "data": {"resolution": 8, "num_samples": 64, "batch_size": 8},
    "search": {"epochs": 2, "max_steps_per_epoch": 2},
    "hessian": {"every": 2, "iters": 3},
}


def write_cfg(tmp_path, method: str = "darts_1st") -> str:
    import yaml

    cfg = read_yaml(repo_root() / "configs" / "darts" / f"{method}.yaml")
    for k, v in TINY.items():
        cfg.setdefault(k, {}).update(v)
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_search_writes_genotype_and_logs_hessian(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["darts", "search", "--config", write_cfg(tmp_path), "--out", str(out), "--no-progress"]) == 0
    g = load_genotype(out / "genotype.json")
    assert len(g.normal[0].edges) == 8 and all(op != "none" for op, _ in g.normal[0].edges)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and sum("hessian_eig" in r for r in rows) == 2
    assert (out / "checkpoints" / "last.pt").exists() and (out / "genotypes" / "epoch_001.json").exists()
    assert list(out.glob("cell_normal.*"))
    # a second run into the same folder without --resume is refused cleanly
    assert main(["darts", "search", "--config", write_cfg(tmp_path), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = read_yaml(write_cfg(tmp_path, "sdarts_rs"))  # random perturbations: RNG state must be restored too
    cfg["hessian"]["iters"] = 1
    full = DartsSearch(cfg, tmp_path / "full", show_progress=False)
    full.run()
    part = DartsSearch(cfg, tmp_path / "part", show_progress=False)
    part.run(stop_after=1)
    resumed = DartsSearch(cfg, tmp_path / "part", show_progress=False)
    resumed.run(resume=True)
    for a, b in zip(full.model.arch_parameters(), resumed.model.arch_parameters()):
        assert torch.equal(a, b)
    for a, b in zip(full.model.weight_parameters(), resumed.model.weight_parameters()):
        assert torch.equal(a, b)
    full_rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    part_rows = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["train_loss"] for r in full_rows] == [json.loads(r)["train_loss"] for r in part_rows]
    assert load_genotype(tmp_path / "full" / "genotype.json") == load_genotype(tmp_path / "part" / "genotype.json")


def test_cli_genotypes_and_eval_onnx(tmp_path, capsys):
    assert main(["darts", "genotypes"]) == 0
    assert "DARTS_V2" in capsys.readouterr().out
    report = tmp_path / "r.json"
    args = ["darts", "eval", "--genotype", "PDARTS", "--C", "8", "--cells", "5", "--onnx", str(tmp_path / "p.onnx"),
            "--json", str(report)]  # fmt: skip
    assert main(args) == 0
    r = json.loads(report.read_text())
    assert r["parity_max_abs_diff"] < 1e-4 and r["params_without_aux"] > 0
    assert main(["darts", "eval", "--genotype", "nope"]) == 2


def test_cli_train_eval_net(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "net: {C: 8, num_cells: 5}\ndata: {resolution: 16, num_samples: 32, batch_size: 8}\n"
        "train: {epochs: 1, max_steps_per_epoch: 2}\n"
    )
    out = tmp_path / "train"
    assert main(["darts", "train", "--genotype", "DARTS_V1", "--config", str(cfg), "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["params_without_aux"] > 0
    assert get_genotype(str(out / "genotype.json")) == get_genotype("DARTS_V1")
    # test accuracy: the trained network's right answers on the test split, counted here by hand
    from tfnas.darts.config import resolve_train_config
    from tfnas.darts.network import build_eval_net
    from tfnas.data import build_datasets
    from tfnas.utils.checkpoint import load_weights_state

    c = resolve_train_config(read_yaml(cfg))
    assert (c.net.C, c.net.num_cells) == (8, 5)
    data = build_datasets("generated", resolution=16, held_out_fraction=0.0, num_samples=32, seed=0)
    net = build_eval_net(get_genotype("DARTS_V1"), "cifar", data.num_classes, C=8, num_cells=5)
    net.load_state_dict(load_weights_state(out / "checkpoints" / "last.pt"))
    with torch.no_grad():
        logits = net.eval()(torch.stack([x for x, _ in data.test]))
    right = sum(int(p == y) for p, (_, y) in zip(logits.argmax(1).tolist(), data.test))
    assert report["test_acc"] == right / len(data.test)


def _expected_latency_by_hand(weights: dict, lat: dict) -> float:
    """sum over deployed cells, edges and ops of weight x table latency x 2 / (edges into the node), + fixed parts."""
    from profilers.lut import LatencyTable
    from tfnas.darts.latency import deploy_positions, fixed_parts, op_key
    from tfnas.darts.shapes import DeployShape
    from tfnas.darts.space import cell_edges, load_cell_space
    from tfnas.resources import find_table

    table = LatencyTable.load(find_table(lat["table"]))
    shape = DeployShape(**lat["deploy"])
    total = sum(table.latency(key, None) for key in (g.key for g in fixed_parts(shape)))
    space = load_cell_space("s0")
    for p in deploy_positions(shape):
        kind = "reduce" if p.reduction else "normal"
        for e, (node, _) in enumerate(cell_edges()):
            for k, op in enumerate(space.ops(kind)[e]):
                if op != "none":
                    ms = table.latency(op_key(op, p.C, p.edge_stride(e), p.edge_resolution(e)), None)
                    total += float(weights[kind][0, e, k]) * ms * 2 / node  # node n has n incoming edges
    return total


def test_latency_aware_search_logs_the_latency_term(tmp_path, monkeypatch):
    """The logged term is lambda * |LAT / T - 1| with LAT the weighted table latency at that step's weights."""
    from tfnas.darts import latency as darts_latency

    seen = []
    real = darts_latency.LatencyLoss.__call__

    def spy(self, model, weights, progress):
        seen.append({k: w.detach().clone() for k, w in weights.items()})
        return real(self, model, weights, progress)

    monkeypatch.setattr(darts_latency.LatencyLoss, "__call__", spy)
    cfg = read_yaml(write_cfg(tmp_path, "latency_aware"))
    cfg["search"]["epochs"] = 1
    cfg["hessian"]["every"] = 0
    DartsSearch(cfg, tmp_path / "run", show_progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lat = cfg["latency"]
    assert len(rows) == len(seen) == 2
    for row, weights in zip(rows, seen):
        expected = _expected_latency_by_hand(weights, lat)
        assert row["expected_latency_ms"] == pytest.approx(expected, rel=1e-4)
        assert row["reg_latency"] == pytest.approx(lat["lambda"] * abs(expected / lat["target_ms"] - 1), rel=1e-4)
