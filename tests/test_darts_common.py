"""Shared search trainer pieces (tfnas.search.common)."""

from __future__ import annotations

import math

import pytest
import torch

from tfnas.errors import ConfigError
from tfnas.search.common import RunCheckpoint, StepTimer, build_lr_schedule, build_optimizer, set_lr


def test_optimizer_builder():
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(p, {"name": "adam", "lr": 0.1, "betas": [0.5, 0.9], "weight_decay": 1e-3})
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["betas"] == (0.5, 0.9)
    set_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ConfigError, match="unknown optimizer"):
        build_optimizer(p, {"name": "lbfgs2"})
    with pytest.raises(ConfigError, match="bad sgd"):
        build_optimizer(p, {"name": "sgd", "lr": 0.1, "nope": 1})


def test_lr_schedules():
    cos = build_lr_schedule({"name": "cosine", "min_lr": 0.001}, 0.025, 101)
    assert cos(0) == 0.025 and math.isclose(cos(101), 0.001) and 0.001 < cos(100) < cos(50) < cos(10)
    warm = build_lr_schedule({"name": "cosine", "warmup_steps": 4}, 1.0, 20)
    assert warm(0) == 0.25 and warm(3) == 1.0
    step = build_lr_schedule({"name": "step", "step_size": 10, "gamma": 0.5}, 1.0, 100)
    assert step(9) == 1.0 and step(10) == 0.5
    assert build_lr_schedule(None, 0.3, 10)(7) == 0.3
    with pytest.raises(ConfigError):
        build_lr_schedule({"name": "exp"}, 1.0, 10)


def test_run_checkpoint_roundtrip(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    ckpt = RunCheckpoint(tmp_path)
    assert not ckpt.exists()
    ckpt.save(3, {"model": model, "opt": opt}, {"note": 1})
    r = torch.rand(1)
    model2 = torch.nn.Linear(2, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    epoch, extra = RunCheckpoint(tmp_path).load({"model": model2, "opt": opt2})
    assert epoch == 3 and extra == {"note": 1}
    assert torch.equal(model.weight, model2.weight)
    assert torch.equal(torch.rand(1), r)  # RNG restored to the saved state
    with pytest.raises(ConfigError, match="lacks"):
        RunCheckpoint(tmp_path).load({"other": model2})


def test_timer():
    t = StepTimer()
    for _ in range(2):
        with t("a"):
            pass
    assert t.count["a"] == 2 and "sec_per_a" in t.summary()
