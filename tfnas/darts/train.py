"""Train a DARTS evaluation network from scratch (the 'eval' phase of the papers) with the one training loop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tfnas.darts.config import DartsTrainConfig, load_train_config
from tfnas.darts.network import build_eval_net, count_params_without_aux
from tfnas.darts.space import Genotype, get_genotype
from tfnas.data import build_datasets, is_builtin_source
from tfnas.errors import ConfigError
from tfnas.train.common import claim_run_dir
from tfnas.train.loop import train_network
from tfnas.utils.seed import seed_everything


def train_eval_net(
    genotype: Genotype,
    cfg: DartsTrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``genotype``'s evaluation network of ``cfg.setting`` into ``out_dir`` (claimed first: ``force`` writes
    into a non-empty folder that is not a tfnas run); returns the report (``train_report.json``)."""
    out = claim_run_dir(out_dir, resume, force)
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
    extra = {"genotype": genotype.to_dict(), "params_without_aux": count_params_without_aux(model)}
    report = train_network(
        model, data, cfg.train, out, batch_size=d.batch_size, config=cfg.to_dict(), workers=d.workers,
        channels_last=rt.channels_last, drop_path=cfg.net.drop_path_prob, resume=resume,
        show_progress=rt.progress if show_progress is None else show_progress, report_extra=extra,
    )  # fmt: skip
    genotype.save(out / "genotype.json")
    return report


def run_darts_train(
    genotype: str | Path | Genotype,
    config: str | Path | DartsTrainConfig | None = None,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``genotype`` (a published name, a genotype JSON or a genotype) under ``config`` (a YAML file, a
    config, or None: the setting's defaults; ``overrides``: dotted keys for a file or the defaults) into ``out``
    (default ``runs/darts_train/<genotype name>``); returns the training report."""
    if out is None and isinstance(genotype, Genotype):
        raise ConfigError("run_darts_train: give the run folder (out) of a genotype that is not named")
    g = genotype if isinstance(genotype, Genotype) else get_genotype(genotype)
    cfg = config if isinstance(config, DartsTrainConfig) else load_train_config(config, overrides)
    out = out or Path("runs") / "darts_train" / Path(str(genotype)).stem
    return train_eval_net(g, cfg, out, resume=resume, force=force)
