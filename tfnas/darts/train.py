"""Train a DARTS evaluation network from scratch (the 'eval' phase of the papers) with the one training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tfnas.darts.config import DartsTrainConfig
from tfnas.darts.network import build_eval_net, count_params_without_aux
from tfnas.darts.space import Genotype
from tfnas.data import build_datasets, is_builtin_source
from tfnas.train.loop import train_network
from tfnas.utils.seed import seed_everything


def train_eval_net(
    genotype: Genotype,
    cfg: DartsTrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Train ``genotype``'s evaluation network of ``cfg.setting``; returns the report (``train_report.json``)."""
    d, rt = cfg.data, cfg.runtime
    if rt.threads:
        torch.set_num_threads(rt.threads)
    real = not is_builtin_source(d.source)  # generated data keeps its own variation
    data = build_datasets(d.source, resolution=d.resolution, num_classes=d.num_classes, held_out_fraction=0.0,
                          num_samples=d.num_samples, seed=cfg.train.seed, augment=d.augment and real,
                          max_samples=d.max_samples, cutout_length=d.cutout if real else 0)  # fmt: skip
    seed_everything(cfg.train.seed)
    net = cfg.net.model_dump()
    model = build_eval_net(genotype, cfg.setting, data.num_classes, data.in_channels, **net)
    out = Path(out_dir)
    extra = {"genotype": genotype.to_dict(), "params_without_aux": count_params_without_aux(model)}
    report = train_network(
        model, data, cfg.train, out, batch_size=d.batch_size, config=cfg.to_dict(), workers=d.workers,
        channels_last=rt.channels_last, drop_path=cfg.net.drop_path_prob, resume=resume,
        show_progress=rt.progress if show_progress is None else show_progress, report_extra=extra,
    )  # fmt: skip
    genotype.save(out / "genotype.json")
    return report
