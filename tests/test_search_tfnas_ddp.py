"""TF-NAS search under torch.distributed: 2 gloo processes on CPU run the same algorithm (slow)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.test_search_tfnas import _target, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    from tfnas.mbv2.search.searcher import TFNASSearch
    from tfnas.utils.distributed import cleanup, init_distributed

    info = init_distributed("cpu")
    try:
        res = TFNASSearch(cfg, out, dist_info=info).run()
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"arch": res.arch.to_dict(), "predicted_ms": res.predicted_ms}, f)
    finally:
        cleanup(info)


@pytest.mark.slow
@pytest.mark.parametrize("op_weights", ["independent", "shared"])
def test_two_process_gloo_search_agrees_across_ranks(tmp_path, tiny_space, op_weights):
    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1, op_weights=op_weights)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(out)), nprocs=2, join=True)
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0 == r1  # identical parameters on every rank -> identical derivation
    from tfnas.mbv2.arch import load_arch

    arch = load_arch(out / "arch.json", tiny_space)
    assert abs(arch.meta["predicted_ms"] / cfg["target_ms"] - 1) <= 0.003
