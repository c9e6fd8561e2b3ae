"""Derived architectures as timm models, so timm's training recipes can train them.

``import tfnas.mbv2.timm_model`` registers the entry point ``tfnas_derived``::

    timm.create_model("tfnas_derived", arch="runs/demo/arch.json", num_classes=100)

and timm's ``train.py`` takes it as ``--model tfnas_derived --model-kwargs arch=runs/demo/arch.json``.

``train.py`` hands every model the same keyword arguments. Those a derived network can honour
are passed on (``num_classes``, ``drop_rate`` as the head's dropout, ``bn_momentum``, ``bn_eps``,
``device``, ``dtype``); the others are accepted only at the value that changes nothing
(``in_chans`` equal to the space's input channels, ``global_pool="avg"``, no drop path or drop
block) and any other value is an error that says why, never silently dropped: the network
that trains must be the one whose latency was searched.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import nn

from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.net import MBV2Net, build_model

# what timm's create_model passes every entry point; about weights, which tfnas_derived never has
_WEIGHT_SOURCES = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


class TimmMBV2Net(MBV2Net):
    """A derived network with the attributes timm's recipes read."""

    def __init__(self, arch: Architecture, num_classes: int | None = None, drop_rate: float | None = None):
        super().__init__(arch, num_classes, drop_rate)
        res = arch.resolution
        self.num_classes = num_classes or arch.space.num_classes
        self.drop_rate = self.head.dropout.p if isinstance(self.head.dropout, nn.Dropout) else 0.0
        self.default_cfg = self.pretrained_cfg = {
            "input_size": (arch.space.in_channels, res, res),
            "num_classes": self.num_classes,
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "classifier": "head.classifier",
            "first_conv": "stem.0",
        }

    def get_classifier(self) -> nn.Module:
        return self.head.classifier


def _check_fixed(arch: Architecture, kwargs: dict[str, Any]) -> None:
    """Arguments a derived network cannot change: only their no-op value is accepted."""
    in_chans = kwargs.pop("in_chans", None)
    if in_chans is not None and int(in_chans) != arch.space.in_channels:
        raise ConfigError(
            f"tfnas_derived: in_chans={in_chans}, but the architecture's space takes {arch.space.in_channels}"
            " input channels (its stem, and its latency, are fixed by the search)"
        )
    pool = kwargs.pop("global_pool", None)
    if pool not in (None, "avg"):
        raise ConfigError(f"tfnas_derived: global_pool={pool!r}: the derived head pools by average only ('avg')")
    for name in ("drop_path_rate", "drop_block_rate"):
        rate = kwargs.pop(name, None)
        if rate:
            raise ConfigError(f"tfnas_derived: {name}={rate}: derived networks have no stochastic depth or DropBlock")
    if kwargs:
        raise ConfigError(
            f"tfnas_derived: unsupported arguments {sorted(kwargs)}; it takes arch, num_classes, drop_rate,"
            " bn_momentum, bn_eps, device, dtype (and in_chans, global_pool, drop_path_rate, drop_block_rate"
            " at their no-op values)"
        )


@register_model
def tfnas_derived(pretrained: bool = False, arch: str | None = None, **kwargs: Any) -> TimmMBV2Net:
    """A network from a tfnas derived-architecture JSON (``arch=PATH``); no pretrained weights."""
    if arch is None:
        raise ConfigError("tfnas_derived needs arch=PATH to a derived-architecture JSON file")
    if pretrained:
        raise ConfigError("tfnas_derived has no pretrained weights: train it from scratch")
    for name in _WEIGHT_SOURCES:
        kwargs.pop(name, None)
    num_classes, drop_rate = kwargs.pop("num_classes", None), kwargs.pop("drop_rate", None)
    bn_momentum, bn_eps = kwargs.pop("bn_momentum", None), kwargs.pop("bn_eps", None)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    derived = load_arch(arch)
    _check_fixed(derived, kwargs)
    model = TimmMBV2Net(derived, num_classes, drop_rate)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = m.momentum if bn_momentum is None else float(bn_momentum)
            m.eps = m.eps if bn_eps is None else float(bn_eps)
    to = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    return model.to(**to) if to else model


__all__ = ["TimmMBV2Net", "tfnas_derived", "build_model"]
