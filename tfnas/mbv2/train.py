"""``tfnas train``: a derived MBV2 architecture trained from scratch with the shared loop (``tfnas.train.loop``).

The loop trains any ``nn.Module``; this module only knows how a derived architecture becomes one (its network,
or an initial network such as its slice of a search's supernet) and which settings ``tfnas train`` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from torch import nn

from tfnas.config.loader import OptimizerSpec, ScheduleSpec, Schema, load_file
from tfnas.data import build_datasets
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.net import build_model
from tfnas.train.loop import TrainRecipe, train_network
from tfnas.utils.seed import seed_everything


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


def _supernet_start(arch: Architecture, run_dir: str | Path) -> Callable[[int], nn.Module]:
    """``init(num_classes)``: ``arch``'s network starting as its slice of a TF-NAS search run's supernet."""
    from tfnas.mbv2.search.inherit import load_supernet, slice_network  # the search stack, only when asked

    supernet = load_supernet(run_dir, device="cpu")[0]
    return lambda classes: slice_network(supernet, arch, classes)


def train_derived(
    arch: Architecture,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """``tfnas train``: ``arch`` on ``cfg.data`` (generated, CIFAR-10 or an ImageFolder tree).

    ``init_from``: a TF-NAS search run folder; the network starts as the architecture's slice of its supernet
    instead of freshly initialised (the report records the run)."""
    init = _supernet_start(arch, init_from) if init_from else None
    extra = {"init_from": str(init_from)} if init_from else {}
    res = cfg.resolution or arch.resolution
    data = build_datasets(cfg.data, resolution=res, held_out_fraction=0.0, num_samples=cfg.num_samples, seed=cfg.seed)
    seed_everything(cfg.seed)  # the same initial weights on every rank
    model = build_model(arch, data.num_classes) if init is None else init(data.num_classes)
    return train_network(
        model, data, cfg.recipe(), out_dir, batch_size=cfg.batch_size, config=cfg.to_dict(), workers=cfg.workers,
        device=cfg.device, channels_last=cfg.channels_last, resume=resume,
        resume_ignore=("device", "workers", "channels_last"), report_extra={"arch": arch.to_dict(), **extra},
    )  # fmt: skip
