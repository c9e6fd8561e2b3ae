"""Training a derived network: it learns, and an interrupted run resumes to the same weights."""

from __future__ import annotations

import json

import pytest
import torch

import tfnas.train.common as training
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.train import TrainConfig, train_derived
from tfnas.utils.checkpoint import load_checkpoint


def _cfg(**kw) -> TrainConfig:
    base = dict(
        data="generated", epochs=2, batch_size=32, lr=0.1, num_samples=192, seed=1, device="cpu", label_smoothing=0.0
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_and_writes_report(tmp_path, tiny_space):
    arch = Architecture.uniform(tiny_space, "k3_e3")
    report = train_derived(arch, _cfg(epochs=4, num_samples=512), tmp_path)
    accs = [h["test_acc"] for h in report["history"]]
    assert accs[-1] > 0.5 > accs[0] - 0.2  # 10 classes: chance is 0.1; about 0.9 after 4 epochs
    saved = json.loads((tmp_path / "train_report.json").read_text())
    assert saved["history"] == report["history"]
    assert "model" in load_checkpoint(tmp_path / "model.pt")


def test_resume_after_interruption_matches_uninterrupted(tmp_path, tiny_space, monkeypatch):
    arch = Architecture.uniform(tiny_space, "k3_e3")
    cfg = _cfg(epochs=2)
    full = train_derived(arch, cfg, tmp_path / "full")

    real_save = training.RunCheckpoint.save

    def save_then_die(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt  # killed right after the epoch-1 checkpoint

    monkeypatch.setattr(training.RunCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_derived(arch, cfg, tmp_path / "cut")
    monkeypatch.setattr(training.RunCheckpoint, "save", real_save)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1

    resumed = train_derived(arch, cfg, tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "model.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert resumed["history"] == full["history"]


def test_a_finished_run_is_never_overwritten_and_resume_checks_the_config(tmp_path, tiny_space):
    from tfnas.errors import ConfigError, TfnasError

    arch = Architecture.uniform(tiny_space, "k3_e3")
    with pytest.raises(TfnasError, match=r"--resume: no checkpoint at .*last.pt"):
        train_derived(arch, _cfg(epochs=1), tmp_path / "new", resume=True)
    train_derived(arch, _cfg(epochs=1), tmp_path / "run")
    before = (tmp_path / "run" / "model.pt").read_bytes()
    with pytest.raises(TfnasError, match=r"already holds a checkpoint.*--resume or choose another --out"):
        train_derived(arch, _cfg(epochs=1), tmp_path / "run")
    assert (tmp_path / "run" / "model.pt").read_bytes() == before
    with pytest.raises(ConfigError, match=r"(?s)different config.*lr: 0.1 -> 0.2"):
        train_derived(arch, _cfg(epochs=1, lr=0.2), tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match=r"TrainConfig: key 'device' = 'gpu': expected one of 'cpu' or 'cuda'"):
        _cfg(device="gpu")
