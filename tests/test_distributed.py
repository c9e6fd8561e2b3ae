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
