"""The shapes of DARTS macro networks, as config schemas with their published defaults (torch-free).

``CellNet`` is what the supernet, the evaluation network and the latency keys share: ``C``
initial channels, ``num_cells`` cells with reductions at 1/3 and 2/3 of the depth, and the
CIFAR stem's width ``stem_multiplier * C``. ``SETTINGS`` holds the papers' evaluation settings
(network, data and training recipe), merged once under a training config's own keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tfnas.config.loader import Schema, validate
from tfnas.errors import ConfigError
from tfnas.registry import Registry


class CellNet(Schema):
    """The macro network of stacked cells: ``C`` initial channels, ``num_cells`` cells (reductions at 1/3
    and 2/3 of the depth) and the CIFAR stem's width ``stem_multiplier * C``."""

    C: int = Field(16, ge=1)
    num_cells: int = Field(8, ge=3)
    stem_multiplier: int = Field(3, ge=1)


class SupernetSection(CellNet):
    alpha_init_std: float = Field(1e-3, ge=0)


class DeployShape(CellNet):
    """The deployed network a latency term describes (CIFAR-style macro network, batch and input size)."""

    C: int = Field(36, ge=1)
    num_cells: int = Field(20, ge=3)
    resolution: int = Field(32, ge=4)
    batch: int = Field(1, ge=1)
    in_channels: int = Field(3, ge=1)
    num_classes: int = Field(10, ge=1)


def parse_deploy(text: str) -> DeployShape:
    """``C=36,num_cells=20`` -> the ``DeployShape`` (the schema checks names and ranges; unset keys: defaults)."""
    raw = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"--deploy: expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        try:
            raw[k.strip()] = int(v)
        except ValueError:
            raise ConfigError(f"--deploy: {k} must be an integer, got {v!r}") from None
    return validate(DeployShape, raw, "--deploy")


class DartsNet(CellNet):
    """An evaluation network: its setting's stem, drop path and auxiliary head (defaults: ``SETTINGS``)."""

    stem: Literal["cifar", "imagenet"] = "cifar"
    auxiliary: bool = True
    drop_path_prob: float = Field(0.2, ge=0, lt=1)


# The papers' evaluation recipes (DARTS, Liu et al. 2019, and its official code): CIFAR-10 C=36, 20 cells, 600
# epochs of SGD 0.025 cosine, batch 96, drop path 0.2, cutout; ImageNet (mobile) C=48, 14 cells, 250 epochs of SGD
# 0.1 decayed x0.97 per epoch, batch 128, label smoothing 0.1, no drop path. Both: auxiliary head weight 0.4, clip 5.
SETTINGS: Registry[dict[str, Any]] = Registry("DARTS setting")
SETTINGS.add(
    "cifar",
    {
        "net": {"C": 36, "num_cells": 20, "stem": "cifar", "auxiliary": True, "drop_path_prob": 0.2},
        "data": {"resolution": 32, "batch_size": 96, "augment": True, "cutout": 16},
        "train": {
            "epochs": 600,
            "optimizer": {"name": "sgd", "lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4},
            "schedule": {"name": "cosine", "min_lr": 0.0, "per": "epoch"},
            "label_smoothing": 0.0,
        },
    },
)
SETTINGS.add(
    "imagenet",
    {
        "net": {"C": 48, "num_cells": 14, "stem": "imagenet", "auxiliary": True, "drop_path_prob": 0.0},
        "data": {"resolution": 224, "batch_size": 128, "augment": True},
        "train": {
            "epochs": 250,
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 3e-5},
            "schedule": {"name": "step", "step_size": 1, "gamma": 0.97, "per": "epoch"},
            "label_smoothing": 0.1,
        },
    },
)
