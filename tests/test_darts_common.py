"""Shared search trainer pieces (tfnas.train.common)."""

from __future__ import annotations

import math

import pytest
import torch

from tfnas.errors import ConfigError
from tfnas.train.common import RunCheckpoint, StepTimer, build_lr_schedule, build_optimizer, set_lr
from tfnas.utils.checkpoint import load_checkpoint, save_checkpoint


def test_optimizer_builder():
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(p, {"name": "adam", "lr": 0.1, "betas": [0.5, 0.9], "weight_decay": 1e-3})
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["betas"] == (0.5, 0.9)
    set_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ConfigError, match="key 'name' = 'lbfgs2': expected one of 'sgd', 'adam' or 'adamw'"):
        build_optimizer(p, {"name": "lbfgs2", "lr": 0.1})
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
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


def test_run_loop_counts_finished_epochs_and_resumes_mid_epoch(tmp_path):
    from tfnas.train.common import RunLoop
    from tfnas.utils.metrics import read_metrics

    loop = RunLoop(tmp_path, {"model": torch.nn.Linear(2, 2)}, epochs=3, steps_per_epoch=4)
    logger = loop.start(False, {"lr": 0.1})
    for step in range(8):
        logger.log(step, loss=1.0)
    loop.save(1, {"note": 1}, step=2)  # one epoch and two steps of the second were done; steps 6, 7 were not
    logger.close()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1

    again = RunLoop(tmp_path, {"model": torch.nn.Linear(2, 2)}, epochs=3, steps_per_epoch=4)
    again.start(True, {"lr": 0.1}).close()
    assert (again.epoch, again.step, again.global_step, again.extra) == (1, 2, 6, {"note": 1})
    assert list(again.epochs()) == [1, 2] and again.first_step(1) == 2 and again.first_step(2) == 0
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3, 4, 5]  # logged again on the way


@pytest.mark.parametrize(("index", "epochs_done"), [(True, 3), (False, 2)])
def test_run_loop_converts_checkpoints_of_the_old_conventions(tmp_path, index, epochs_done):
    from tfnas.train.common import RunLoop

    model = torch.nn.Linear(2, 2)
    old = {"epoch": 2, "state": {"model": model.state_dict()}, "rng": None, "extra": {"next_step": 1}}
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", old)  # no version: before one convention
    loop = RunLoop(tmp_path, {"model": model}, epochs=5, steps_per_epoch=4, old_epoch_is_index=index)
    loop.start(True, {}).close()
    assert (loop.epoch, loop.step) == (epochs_done, 1)  # DARTS stored the finished epoch's index, TF-NAS the count

    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {**old, "version": 99})
    with pytest.raises(ConfigError, match="version 99, newer than this tfnas reads"):
        RunLoop(tmp_path, {"model": model}, epochs=5, steps_per_epoch=4).start(True, {})


def test_evaluate_counts_right_answers_and_averages_the_loss():
    from tfnas.train.common import evaluate

    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # logits = inputs: the larger input is the prediction
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])  # the third is wrong: 3 of 4 right
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    loss, acc = evaluate(model, batches)
    assert acc == 0.75
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(x, y).item())
