"""Train a network from scratch: one loop for derived MBV2 networks and DARTS evaluation networks.

One process, or many through torchrun (DDP). Checkpoints every epoch (``OUT/checkpoints/last.pt``:
model, optimizer, RNG, epoch) so an interrupted run resumes with ``resume=True`` and ends where an
uninterrupted one would. Writes ``metrics.csv``/``metrics.jsonl``, ``train_report.json`` (history,
final test accuracy, parameters) and the final weights ``model.pt`` (a plain state dict under
``"model"``). A model may return ``(logits, aux_logits)`` in training mode (DARTS's auxiliary
head, weighted by ``auxiliary_weight``) and have a ``drop_path_prob`` (grown linearly to
``drop_path`` over the run, as DARTS does).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tfnas.config.loader import Schema, load_file
from tfnas.config.specs import OptimizerSpec, ScheduleSpec, cosine, sgd
from tfnas.data import DataBundle, build_datasets, make_loader, set_loader_epoch
from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_model
from tfnas.train.common import RunLoop, build_lr_schedule, build_optimizer, evaluate, progress, set_lr
from tfnas.utils.checkpoint import save_checkpoint
from tfnas.utils.distributed import all_reduce_mean, cleanup, init_distributed, make_sampler, unwrap, wrap_ddp
from tfnas.utils.io import atomic_write_json
from tfnas.utils.memory_format import apply_memory_format
from tfnas.utils.seed import seed_everything

_log = logging.getLogger(__name__)


class TrainRecipe(Schema):
    """How a network is trained (optimizer, schedule, regularisation); the same for every kind of network."""

    epochs: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    optimizer: OptimizerSpec = sgd(0.05, 0.9, 4e-5, nesterov=True)
    schedule: ScheduleSpec = cosine(0.0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    auxiliary_weight: float = Field(0.4, ge=0)  # for networks with an auxiliary head
    grad_clip: float | None = Field(5.0, ge=0)
    log_every: int = Field(10, ge=1)


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

    def recipe(self) -> TrainRecipe:
        opt = OptimizerSpec(name="sgd", lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                            nesterov=True)  # fmt: skip
        schedule = ScheduleSpec(name="cosine", warmup_epochs=self.warmup_epochs)
        return TrainRecipe(epochs=self.epochs, seed=self.seed, optimizer=opt, schedule=schedule,
                           label_smoothing=self.label_smoothing)  # fmt: skip


def load_train_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A YAML file of ``TrainConfig`` keys, checked (errors name the file and the key)."""
    return load_file(path, TrainConfig, "train config", overrides)


def train_network(
    model: nn.Module,
    data: DataBundle,
    recipe: TrainRecipe,
    out_dir: str | Path,
    *,
    batch_size: int,
    config: dict[str, Any],
    workers: int = 0,
    device: str | None = None,
    channels_last: bool = True,
    drop_path: float = 0.0,
    resume: bool = False,
    show_progress: bool | None = None,
    resume_ignore: tuple[str, ...] = ("runtime.",),
    report_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``data.train`` with ``recipe``; returns the report (also ``train_report.json``).

    ``config``: the run's full config (saved; a resume must match it except keys starting with
    ``resume_ignore``). ``device``: cpu, cuda, or None for cuda when available (DDP under torchrun).
    ``report_extra``: more facts for the report (e.g. the architecture).
    """
    out = Path(out_dir)
    info = init_distributed(device)
    seed_everything(recipe.seed + info.rank)
    model = apply_memory_format(model.to(info.device), channels_last)
    ddp_model = wrap_ddp(model, info)
    opt = build_optimizer(model.parameters(), recipe.optimizer)
    sampler = make_sampler(data.train, info, shuffle=True, seed=recipe.seed)
    train_loader = make_loader(data.train, batch_size, shuffle=True, seed=recipe.seed, workers=workers, sampler=sampler)
    test_loader = (
        make_loader(data.test, batch_size, shuffle=False, drop_last=False, workers=workers)
        if data.test is not None
        else None
    )
    steps = min(len(train_loader), recipe.max_steps_per_epoch or len(train_loader))
    if steps < 1:
        raise ConfigError(f"no training batches: {len(data.train)} samples for batch size {batch_size}")
    loop = RunLoop(out, {"model": unwrap(ddp_model), "optimizer": opt}, recipe.epochs, steps, is_main=info.is_main)
    logger = loop.start(resume, config, resume_ignore)
    history = list(loop.extra.get("history", []))
    lr_at = build_lr_schedule(recipe.schedule, recipe.optimizer.lr, recipe.epochs * steps, steps)
    try:
        for epoch in loop.epochs():
            # each rank's draws (dropout, drop path) come from (seed, rank, epoch): a resume needs no other rank's
            # RNG state, and the checkpoint (written by rank 0) holds only rank 0's
            seed_everything((recipe.seed * 1_000_003 + epoch) * 4096 + info.rank)
            ddp_model.train()
            if hasattr(model, "drop_path_prob"):
                model.drop_path_prob = drop_path * epoch / recipe.epochs
            set_loader_epoch(train_loader, epoch)
            batches = itertools.islice(train_loader, steps)
            bar = progress(batches, steps, f"train {epoch + 1}/{recipe.epochs}",
                           show_progress if info.is_main else False)  # fmt: skip
            loss_sum = torch.zeros((), device=info.device)
            for i, (x, y) in enumerate(bar):
                step = epoch * steps + i
                set_lr(opt, lr_at(step))
                x, y = x.to(info.device), y.to(info.device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out_ = ddp_model(x)
                logits, aux = out_ if isinstance(out_, tuple) else (out_, None)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
                if aux is not None:
                    loss = loss + recipe.auxiliary_weight * F.cross_entropy(
                        aux, y, label_smoothing=recipe.label_smoothing
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                opt.step()
                loss_sum += loss.detach()
                if logger is not None and step % recipe.log_every == 0:
                    logger.log(step, train_loss=loss.item(), lr=opt.param_groups[0]["lr"])
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": all_reduce_mean(loss_sum / steps, info).item()}
            if test_loader is not None and info.is_main:
                row["test_loss"], row["test_acc"] = evaluate(unwrap(ddp_model), test_loader, info.device, channels_last)
            history.append(row)
            if logger is not None:
                logger.log((epoch + 1) * steps - 1, **row)  # at the epoch's last step: a resume keeps it
                _log.info(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            loop.save(epoch + 1, {"history": history})
    finally:
        loop.finish(logger)
    report = {
        **(report_extra or {}),
        "config": config,
        "world_size": info.world_size,
        "params": sum(p.numel() for p in model.parameters()),
        "test_acc": history[-1].get("test_acc") if history else None,
        "history": history,
    }
    if info.is_main:
        save_checkpoint(out / "model.pt", {"model": unwrap(ddp_model).state_dict()})
        atomic_write_json(out / "train_report.json", report)
    cleanup(info)
    return report


def train_derived(
    arch: Architecture,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    init: Callable[[int], nn.Module] | None = None,
    report_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``tfnas train``: ``arch`` on ``cfg.data`` (generated, CIFAR-10 or an ImageFolder tree).

    ``init(num_classes)``: the starting network (e.g. the architecture's slice of a search's supernet), instead
    of a freshly initialised one."""
    res = cfg.resolution or arch.resolution
    data = build_datasets(cfg.data, resolution=res, held_out_fraction=0.0, num_samples=cfg.num_samples, seed=cfg.seed)
    seed_everything(cfg.seed)  # the same initial weights on every rank
    model = build_model(arch, data.num_classes) if init is None else init(data.num_classes)
    return train_network(
        model, data, cfg.recipe(), out_dir, batch_size=cfg.batch_size, config=cfg.to_dict(), workers=cfg.workers,
        device=cfg.device, channels_last=cfg.channels_last, resume=resume,
        resume_ignore=("device", "workers", "channels_last"), report_extra={"arch": arch.to_dict(), **(report_extra or {})},
    )  # fmt: skip
