"""Checkpoints: atomic round trip, clear errors, RNG capture/restore, seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from tfnas.errors import TfnasError
from tfnas.utils.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from tfnas.utils.seed import seed_everything


def _draws() -> tuple[float, float, list[float], list[float]]:
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
    )


def test_round_trip_with_model_optimizer_and_rng(tmp_path):
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "name": "run",
        "history": [0.5, 0.25],
        "rng": capture_rng_state(),
    }
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", state)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["name"] == "run" and loaded["history"] == [0.5, 0.25]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    opt2 = torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded["optimizer"])


def test_rng_restore_reproduces_random_numbers(tmp_path):
    seed_everything(123)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state()})
    expected = _draws()
    _draws()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert _draws() == expected


def test_seed_everything_is_reproducible():
    seed_everything(7)
    a = _draws()
    seed_everything(7)
    assert _draws() == a


def test_missing_and_corrupted_checkpoints(tmp_path):
    with pytest.raises(TfnasError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.arange(1000.0)})
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TfnasError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(TfnasError, match="garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")


class _Custom:
    pass


def test_arbitrary_objects_are_not_loaded(tmp_path):
    torch.save({"obj": _Custom()}, tmp_path / "obj.pt")
    with pytest.raises(TfnasError, match="obj.pt"):
        load_checkpoint(tmp_path / "obj.pt")
