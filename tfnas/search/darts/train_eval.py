"""Train a DARTS evaluation network from scratch (the 'eval' phase of the papers).

SGD + cosine schedule, auxiliary loss (weight 0.4), drop path growing
linearly over training, gradient clipping; a checkpoint each epoch and exact
resume, per-step metrics and a final test accuracy.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tfnas.config import validate
from tfnas.config.schemas import DartsTrainConfig
from tfnas.errors import ConfigError
from tfnas.models.darts_eval import build_eval_net, count_params_without_aux
from tfnas.search.common import RunLoop, build_lr_schedule, build_optimizer, evaluate, progress, set_lr
from tfnas.spaces.darts_genotypes import Genotype
from tfnas.utils.io import atomic_write_json
from tfnas.utils.memory_format import apply_memory_format


def resolve_train_config(cfg: dict[str, Any] | None, source: str = "<DARTS train config>") -> dict[str, Any]:
    """Defaults overlaid with ``cfg``, every key, type and range checked (``schemas.DartsTrainConfig``)."""
    return validate(DartsTrainConfig, cfg, source)


TRAIN_DEFAULTS: dict[str, Any] = resolve_train_config({}, "<defaults>")


def train_eval_net(
    genotype: Genotype,
    cfg: dict[str, Any],
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool | None = None,
    source: str = "<DARTS train config>",
) -> dict[str, Any]:
    from tfnas.data import build_datasets, make_loader, set_loader_epoch
    from tfnas.utils.seed import seed_everything

    cfg = resolve_train_config(cfg, source)
    t, d, rt = cfg["train"], cfg["data"], cfg["runtime"]
    if rt["threads"]:
        torch.set_num_threads(rt["threads"])
    if show_progress is None:
        show_progress = rt["progress"]
    seed_everything(int(t["seed"]))
    data = build_datasets(
        d["source"], resolution=int(d["resolution"]), num_classes=d.get("num_classes"), held_out_fraction=0.0,
        num_samples=int(d.get("num_samples", 2000)), seed=int(t["seed"]), augment=bool(d.get("augment", False)),
        max_samples=d.get("max_samples"),
    )  # fmt: skip
    bs, workers = int(d["batch_size"]), int(d.get("workers", 0))
    train_loader = make_loader(data.train, bs, shuffle=True, seed=int(t["seed"]), workers=workers)
    test_loader = (
        make_loader(data.test, bs, shuffle=False, workers=workers, drop_last=False) if data.test is not None else None
    )
    net_cfg = {**cfg["net"], "num_classes": data.num_classes, "in_channels": data.in_channels}
    model = build_eval_net(genotype, cfg["setting"], **net_cfg)
    cl = rt["channels_last"]
    model = apply_memory_format(model, cl)
    opt = build_optimizer(model.parameters(), t["optimizer"])
    epochs = int(t["epochs"])
    spe = (
        len(train_loader) if not t.get("max_steps_per_epoch") else min(len(train_loader), int(t["max_steps_per_epoch"]))
    )
    if spe < 1:
        raise ConfigError("no training batches: lower data.batch_size or use more samples")
    lr_at = build_lr_schedule(t.get("schedule"), float(t["optimizer"].get("lr", 0.025)), epochs * spe)
    crit = nn.CrossEntropyLoss()
    out = Path(out_dir)
    loop = RunLoop(out, {"model": model, "optimizer": opt}, epochs, spe, old_epoch_is_index=True)
    logger = loop.start(resume, cfg)
    genotype.save(out / "genotype.json")
    base_drop = float(cfg["net"].get("drop_path_prob", 0.0))
    aux_w = float(t.get("auxiliary_weight", 0.4))
    log_every = max(int(t.get("log_every", 1)), 1)
    summary: dict[str, Any] = {"params_without_aux": count_params_without_aux(model)}
    try:
        for epoch in loop.epochs():
            model.train()
            model.drop_path_prob = base_drop * epoch / max(epochs, 1)
            set_loader_epoch(train_loader, epoch)
            batches = itertools.islice(train_loader, spe)
            for i, (x, y) in enumerate(progress(batches, spe, f"train {epoch + 1}/{epochs}", show_progress)):
                step = epoch * spe + i
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = lr_at(step)
                set_lr(opt, lr)
                opt.zero_grad(set_to_none=True)
                out_ = model(x)
                logits, aux = out_ if isinstance(out_, tuple) else (out_, None)
                loss = crit(logits, y)
                if aux is not None:
                    loss = loss + aux_w * crit(aux, y)
                loss.backward()
                if t.get("grad_clip"):
                    nn.utils.clip_grad_norm_(model.parameters(), float(t["grad_clip"]))
                opt.step()
                acc = float((logits.detach().argmax(1) == y).float().mean())
                if step % log_every == 0:
                    logger.log(step, epoch=epoch, lr=lr, train_loss=float(loss.detach()), train_acc=acc)
            loop.save(epoch + 1)
    finally:
        logger.close()
    if test_loader is not None:
        summary["test_loss"], summary["test_acc"] = evaluate(model, test_loader, channels_last=cl)
    summary["epochs"] = epochs
    atomic_write_json(out / "summary.json", summary)
    return summary
