"""Train a network from scratch: one loop for every family (a derived MBV2 network, a DARTS evaluation network).

The loop takes a built ``nn.Module``; each family builds its own (``tfnas.mbv2.train``, ``tfnas.darts.train``).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from tfnas.config.loader import OptimizerSpec, ScheduleSpec, Schema, cosine, sgd
from tfnas.data import DataBundle, make_loader, set_loader_epoch
from tfnas.errors import ConfigError
from tfnas.train.common import RunLoop, build_lr_schedule, build_optimizer, evaluate, progress, set_lr
from tfnas.utils.checkpoint import save_checkpoint
from tfnas.utils.distributed import (
    DistInfo,
    all_reduce_mean,
    cleanup,
    init_distributed,
    make_sampler,
    unwrap,
    wrap_ddp,
)
from tfnas.utils.memory_format import apply_memory_format
from tfnas.utils.seed import seed_everything
from tfnas_base.atomic import atomic_write_json

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


@dataclass
class _Run:
    """One training run's moving parts, built once: what every epoch reads."""

    info: DistInfo
    model: nn.Module  # on the device, in its memory format
    ddp_model: nn.Module  # ``model``, DDP-wrapped under torchrun
    opt: torch.optim.Optimizer
    train_loader: DataLoader
    test_loader: DataLoader | None
    steps: int  # per epoch
    recipe: TrainRecipe
    channels_last: bool


def _set_up(
    model: nn.Module, data: DataBundle, recipe: TrainRecipe, batch_size: int, workers: int, device: str | None,
    channels_last: bool,
) -> _Run:  # fmt: skip
    """Process group, seeded model, optimizer and seeded loaders, in the order the RNG streams expect."""
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
    return _Run(info, model, ddp_model, opt, train_loader, test_loader, steps, recipe, channels_last)


def _loss(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], y: torch.Tensor, recipe: TrainRecipe) -> torch.Tensor:
    """Cross entropy of the logits, plus the auxiliary head's (weighted) where the model returns one."""
    logits, aux = out if isinstance(out, tuple) else (out, None)
    loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
    if aux is not None:
        loss = loss + recipe.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=recipe.label_smoothing)
    return loss


def _train_epoch(
    run: _Run, epoch: int, lr_at: Callable[[int], float], logger: Any, show_progress: bool | None
) -> torch.Tensor:
    """One epoch's optimisation steps; returns the sum of their losses (on the device)."""
    recipe, info, opt = run.recipe, run.info, run.opt
    batches = itertools.islice(run.train_loader, run.steps)
    bar = progress(batches, run.steps, f"train {epoch + 1}/{recipe.epochs}",
                   show_progress if info.is_main else False)  # fmt: skip
    loss_sum = torch.zeros((), device=info.device)
    for i, (x, y) in enumerate(bar):
        step = epoch * run.steps + i
        set_lr(opt, lr_at(step))
        x, y = x.to(info.device), y.to(info.device)
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = _loss(run.ddp_model(x), y, recipe)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(run.model.parameters(), recipe.grad_clip)
        opt.step()
        loss_sum += loss.detach()
        if logger is not None and step % recipe.log_every == 0:
            logger.log(step, train_loss=loss.item(), lr=opt.param_groups[0]["lr"])
    return loss_sum


def _epoch(
    run: _Run, epoch: int, lr_at: Callable[[int], float], logger: Any, drop_path: float, show_progress: bool | None
) -> dict[str, Any]:
    """Train one epoch and evaluate: the epoch's history row."""
    recipe, info = run.recipe, run.info
    # each rank's draws (dropout, drop path) come from (seed, rank, epoch): a resume needs no other rank's
    # RNG state, and the checkpoint (written by rank 0) holds only rank 0's
    seed_everything((recipe.seed * 1_000_003 + epoch) * 4096 + info.rank)
    run.ddp_model.train()
    if hasattr(run.model, "drop_path_prob"):
        run.model.drop_path_prob = drop_path * epoch / recipe.epochs
    set_loader_epoch(run.train_loader, epoch)
    loss_sum = _train_epoch(run, epoch, lr_at, logger, show_progress)
    row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": all_reduce_mean(loss_sum / run.steps, info).item()}
    if run.test_loader is not None and info.is_main:
        row["test_loss"], row["test_acc"] = evaluate(
            unwrap(run.ddp_model), run.test_loader, info.device, run.channels_last
        )
    if logger is not None:
        logger.log((epoch + 1) * run.steps - 1, **row)  # at the epoch's last step: a resume keeps it
        _log.info(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return row


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
    run = _set_up(model, data, recipe, batch_size, workers, device, channels_last)
    info = run.info
    loop = RunLoop(out, {"model": unwrap(run.ddp_model), "optimizer": run.opt}, recipe.epochs, run.steps,
                   is_main=info.is_main)  # fmt: skip
    logger = loop.start(resume, config, resume_ignore)
    history = list(loop.extra.get("history", []))
    lr_at = build_lr_schedule(recipe.schedule, recipe.optimizer.lr, recipe.epochs * run.steps, run.steps)
    try:
        for epoch in loop.epochs():
            history.append(_epoch(run, epoch, lr_at, logger, drop_path, show_progress))
            loop.save(epoch + 1, {"history": history})
    finally:
        loop.finish(logger)
    report = {
        **(report_extra or {}),
        "config": config,
        "world_size": info.world_size,
        "params": sum(p.numel() for p in run.model.parameters()),
        "test_acc": history[-1].get("test_acc") if history else None,
        "history": history,
    }
    if info.is_main:
        save_checkpoint(out / "model.pt", {"model": unwrap(run.ddp_model).state_dict()})
        atomic_write_json(out / "train_report.json", report)
    cleanup(info)
    return report
