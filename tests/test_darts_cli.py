"""`tfnas darts` end to end on generated data: search, resume, genotypes, eval (ONNX), train."""

from __future__ import annotations

import json

import torch

from tfnas.cli import main
from tfnas.search.darts.trainer import DartsSearch
from tfnas.spaces.darts_genotypes import Genotype, get_genotype
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
    g = Genotype.load(out / "genotype.json")
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
    assert Genotype.load(tmp_path / "full" / "genotype.json") == Genotype.load(tmp_path / "part" / "genotype.json")


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
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["params_without_aux"] > 0
    assert get_genotype(str(out / "genotype.json")) == get_genotype("DARTS_V1")


def test_latency_aware_search_logs_the_latency_term(tmp_path):
    cfg = read_yaml(write_cfg(tmp_path, "latency_aware"))
    cfg["search"]["epochs"] = 1
    cfg["hessian"]["every"] = 0
    DartsSearch(cfg, tmp_path / "run", show_progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["reg_latency"] >= 0 for r in rows) and len(rows) == 2
