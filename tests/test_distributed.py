"""DDP helpers: single-process defaults and a real 2-process gloo group on CPU."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from torch import nn

from tfnas.utils.distributed import (
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    make_sampler,
    unwrap,
    wrap_ddp,
)

_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def test_single_process_defaults(monkeypatch):
    for var in _DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    info = init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (0, 1, 0, True)
    assert info.device == torch.device("cpu") and not info.distributed
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, info) is model and unwrap(model) is model
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(all_reduce_mean(t, info), t)
    assert make_sampler(list(range(10)), info) is None
    barrier(info)
    cleanup(info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    info = init_distributed(device="cpu")
    torch.manual_seed(0)  # same initial weights on every rank
    model = wrap_ddp(nn.Linear(3, 1), info)
    x = torch.full((2, 3), float(rank + 1))  # different data per rank
    model(x).sum().backward()
    with torch.no_grad():  # plain SGD step (torch.optim's first use imports dynamo: slow)
        for p in model.parameters():
            p -= 0.5 * p.grad
    mean = all_reduce_mean(torch.tensor([float(rank)]), info)
    sampler = make_sampler(list(range(10)), info, shuffle=True, seed=1)
    result = {
        "rank": info.rank,
        "is_main": info.is_main,
        "mean": mean.item(),
        "weight": unwrap(model).weight.detach().flatten().tolist(),
        "indices": list(sampler),
    }
    barrier(info)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    cleanup(info)


@pytest.mark.slow
def test_two_process_gloo_group(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["is_main"] and not r1["is_main"]
    assert r0["mean"] == r1["mean"] == 0.5
    assert r0["weight"] == r1["weight"]  # gradients were averaged, so replicas stay in sync
    assert sorted(r0["indices"] + r1["indices"]) == list(range(10))  # disjoint shards


def test_missing_rendezvous_is_a_clear_error(monkeypatch):
    from tfnas.errors import TfnasError

    for var in _DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TfnasError, match="MASTER_ADDR"):
        init_distributed(device="cpu")


def _train_worker(rank: int, world_size: int, port: int, arch_path: str, out: str, mode: str) -> None:
    """``tfnas train`` on one rank: ``full``, ``cut`` (every rank stops after the first epoch's checkpoint) or
    ``resume``."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    from tfnas.mbv2.arch import load_arch
    from tfnas.mbv2.train import TrainConfig, train_derived
    from tfnas.train.common import RunLoop

    if mode == "cut":
        real_save = RunLoop.save

        def save_then_stop(self, *args, **kwargs):
            real_save(self, *args, **kwargs)
            raise KeyboardInterrupt

        RunLoop.save = save_then_stop
    cfg = TrainConfig(data="generated", epochs=2, batch_size=16, num_samples=64, resolution=16, device="cpu", seed=1)
    try:
        train_derived(load_arch(arch_path), cfg, out, resume=mode == "resume")
    except KeyboardInterrupt:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """Only rank 0 writes the checkpoint, yet every rank continues with the random draws it would have made."""
    import torch.multiprocessing as mp

    from tfnas.mbv2.arch import Architecture
    from tfnas.mbv2.space import load_space
    from tfnas.utils.checkpoint import load_checkpoint

    arch_path = tmp_path / "arch.json"
    Architecture.uniform(load_space("tfnas_cifar"), "k3_e3").save(arch_path)
    for mode, out in (("full", "full"), ("cut", "cut"), ("resume", "cut")):
        args = (2, _free_port(), str(arch_path), str(tmp_path / out), mode)
        mp.spawn(_train_worker, args=args, nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "full" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads((tmp_path / d / "train_report.json").read_text())["history"] for d in ("full", "cut")]
    assert history[0] == history[1] and len(history[0]) == 2
