"""Train a derived network from scratch: one process, or many through torchrun (DDP).

Checkpoints every epoch (``OUT/checkpoints/last.pt``: model, optimizer, RNG, epoch) so an
interrupted run resumes with ``resume=True`` and ends where an uninterrupted
one would. Writes ``metrics.csv``/``metrics.jsonl``, ``train_report.json`` and
the final weights ``model.pt`` (a plain state dict under ``"model"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tfnas.arch import Architecture
from tfnas.config import Schema
from tfnas.data import build_datasets, make_loader, set_loader_epoch
from tfnas.models.mbv2_net import build_model
from tfnas.search.common import RunCheckpoint, RunLoop, build_lr_schedule, evaluate, progress, set_lr  # noqa: F401
from tfnas.utils.checkpoint import save_checkpoint
from tfnas.utils.distributed import all_reduce_mean, cleanup, init_distributed, make_sampler, unwrap, wrap_ddp
from tfnas.utils.io import atomic_write_json
from tfnas.utils.memory_format import apply_memory_format
from tfnas.utils.seed import seed_everything

_log = logging.getLogger(__name__)


class TrainConfig(Schema):
    """``tfnas train`` settings (flags, or a YAML file with these keys); checked when built."""

    data: str = "generated"
    resolution: int | None = Field(None, ge=8)  # default: the architecture's resolution
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    warmup_epochs: int = Field(0, ge=0)
    num_samples: int = Field(2000, ge=2)  # generated data only
    workers: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)
    device: Literal["cpu", "cuda"] | None = None  # None: cuda when available
    channels_last: bool = True


def load_train_config(path: str | Path) -> dict[str, Any]:
    """A YAML file of ``TrainConfig`` keys, checked (errors name the file and the key)."""
    from tfnas.config import load_file

    return load_file(path, TrainConfig, "train config")


def train_derived(arch: Architecture, cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> dict:
    """Train ``arch`` on ``cfg.data``; returns the final report (also written to ``train_report.json``)."""
    out = Path(out_dir)
    info = init_distributed(cfg.device)
    seed_everything(cfg.seed + info.rank)
    res = cfg.resolution or arch.resolution
    data = build_datasets(cfg.data, resolution=res, held_out_fraction=0.0, num_samples=cfg.num_samples, seed=cfg.seed)
    model = build_model(arch, data.num_classes)
    model = apply_memory_format(model, cfg.channels_last)
    ddp_model = wrap_ddp(model, info)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    sampler = make_sampler(data.train, info, shuffle=True, seed=cfg.seed)
    train_loader = make_loader(
        data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, workers=cfg.workers, sampler=sampler
    )
    test_loader = (
        make_loader(data.test, cfg.batch_size, shuffle=False, drop_last=False, workers=cfg.workers)
        if data.test is not None
        else None
    )

    steps = len(train_loader)
    loop = RunLoop(out, {"model": unwrap(ddp_model), "optimizer": opt}, cfg.epochs, steps, is_main=info.is_main)
    logger = loop.start(resume, cfg.to_dict(), ("device", "workers", "channels_last"))
    history = list(loop.extra.get("history", []))
    lr_at = build_lr_schedule({"name": "cosine", "warmup_steps": cfg.warmup_epochs * steps}, cfg.lr, cfg.epochs * steps)
    for epoch in loop.epochs():
        # each rank's draws (dropout) come from (seed, rank, epoch): a resume needs no other rank's RNG state,
        # and the checkpoint (written by rank 0) holds only rank 0's
        seed_everything((cfg.seed * 1_000_003 + epoch) * 4096 + info.rank)
        ddp_model.train()
        set_loader_epoch(train_loader, epoch)
        bar = progress(train_loader, steps, f"train {epoch + 1}/{cfg.epochs}", None if info.is_main else False)
        loss_sum = torch.zeros((), device=info.device)
        for i, (x, y) in enumerate(bar):
            set_lr(opt, lr_at(epoch * steps + i))
            x, y = x.to(info.device), y.to(info.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(ddp_model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            loss_sum += loss.detach()
            if logger is not None and i % 10 == 0:
                logger.log(epoch * steps + i, train_loss=loss.item(), lr=opt.param_groups[0]["lr"])
        train_loss = all_reduce_mean(loss_sum / steps, info).item()
        row = {"epoch": epoch + 1, "train_loss": train_loss}
        if test_loader is not None and info.is_main:
            row["test_loss"], row["test_acc"] = evaluate(unwrap(ddp_model), test_loader, info.device, cfg.channels_last)
        history.append(row)
        if logger is not None:
            logger.log((epoch + 1) * steps - 1, **row)  # at the epoch's last step: a resume keeps it
            _log.info(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        loop.save(epoch + 1, {"history": history, "config": cfg.to_dict()})

    report = {"arch": arch.to_dict(), "config": cfg.to_dict(), "world_size": info.world_size, "history": history}
    if info.is_main:
        save_checkpoint(out / "model.pt", {"model": unwrap(ddp_model).state_dict()})
        atomic_write_json(out / "train_report.json", report)
        logger.close()
    cleanup(info)
    return report
