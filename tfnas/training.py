"""Train a derived network from scratch: one process, or many through torchrun (DDP).

Checkpoints every epoch (model, optimizer, schedule, RNG, epoch) so an
interrupted run resumes with ``resume=True`` and ends where an uninterrupted
one would. Writes ``metrics.csv``/``metrics.jsonl``, ``train_report.json`` and
the final weights ``model.pt`` (a plain state dict under ``"model"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tfnas.arch import Architecture
from tfnas.data import build_datasets, make_loader, set_loader_epoch
from tfnas.errors import ConfigError
from tfnas.models.mbv2_net import build_model
from tfnas.utils.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from tfnas.utils.distributed import all_reduce_mean, cleanup, init_distributed, make_sampler, unwrap, wrap_ddp
from tfnas.utils.io import atomic_write_json
from tfnas.utils.metrics import MetricsLogger
from tfnas.utils.seed import seed_everything


@dataclass
class TrainConfig:
    data: str = "generated"
    resolution: int | None = None  # default: the architecture's resolution
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_epochs: int = 0
    num_samples: int = 2000  # generated data only
    workers: int = 0
    seed: int = 0
    device: str | None = None  # "cpu" | "cuda" | None (auto)
    channels_last: bool = True

    def validate(self) -> TrainConfig:
        for name in ("epochs", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} = {getattr(self, name)!r}: expected >= 1")
        if self.lr <= 0:
            raise ConfigError(f"train config: lr = {self.lr!r}: expected > 0")
        return self


def _lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Linear warm-up, then cosine decay to zero: a function of (fractional) epoch, so resume is exact."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-3) / cfg.warmup_epochs
    span = max(1e-9, cfg.epochs - cfg.warmup_epochs)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, channels_last: bool) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        count += y.numel()
    return loss_sum / max(1, count), correct / max(1, count)


def train_derived(arch: Architecture, cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> dict:
    """Train ``arch`` on ``cfg.data``; returns the final report (also written to ``train_report.json``)."""
    cfg.validate()
    out = Path(out_dir)
    info = init_distributed(cfg.device)
    seed_everything(cfg.seed + info.rank)
    res = cfg.resolution or arch.resolution
    data = build_datasets(cfg.data, resolution=res, held_out_fraction=0.0, num_samples=cfg.num_samples, seed=cfg.seed)
    model = build_model(arch, data.num_classes)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
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

    ckpt_path = out / "checkpoint.pt"
    start_epoch = 0
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        unwrap(ddp_model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        history = list(state.get("history", []))
    else:
        history = []
    logger = MetricsLogger(out, resume=resume and start_epoch > 0) if info.is_main else None
    if logger is not None and start_epoch > 0:
        logger.truncate_after(start_epoch * len(train_loader))

    steps = len(train_loader)
    for epoch in range(start_epoch, cfg.epochs):
        ddp_model.train()
        set_loader_epoch(train_loader, epoch)
        bar = tqdm(train_loader, desc=f"train {epoch + 1}/{cfg.epochs}", disable=not info.is_main, leave=False)
        loss_sum = torch.zeros((), device=info.device)
        for i, (x, y) in enumerate(bar):
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, epoch + i / steps)
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
        if info.is_main:
            logger.log((epoch + 1) * steps, **row)
            save_checkpoint(
                ckpt_path,
                {
                    "model": unwrap(ddp_model).state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": capture_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": asdict(cfg),
                },
            )
            tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    report = {"arch": arch.to_dict(), "config": asdict(cfg), "world_size": info.world_size, "history": history}
    if info.is_main:
        save_checkpoint(out / "model.pt", {"model": unwrap(ddp_model).state_dict()})
        atomic_write_json(out / "train_report.json", report)
        logger.close()
    cleanup(info)
    return report
