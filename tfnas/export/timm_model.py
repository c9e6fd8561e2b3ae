"""Derived architectures as timm models, so timm's training recipes can train them.

``import tfnas.export.timm_model`` registers the entry point ``tfnas_derived``::

    timm.create_model("tfnas_derived", arch="runs/demo/arch.json", num_classes=100)

and timm's ``train.py`` takes it as ``--model tfnas_derived --model-kwargs arch=runs/demo/arch.json``.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model

from tfnas.arch import load_arch
from tfnas.errors import ConfigError
from tfnas.models.mbv2_net import MBV2Net, build_model


class TimmMBV2Net(MBV2Net):
    """A derived network with the attributes timm's recipes read."""

    def __init__(self, arch, num_classes: int | None = None, **_: Any):
        super().__init__(arch, num_classes)
        res = arch.resolution
        self.num_classes = num_classes or arch.space.num_classes
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

    def get_classifier(self):
        return self.head.classifier


@register_model
def tfnas_derived(pretrained: bool = False, arch: str | None = None, num_classes: int | None = None, **kwargs: Any):
    """A network from a tfnas derived-architecture JSON (``arch=PATH``); no pretrained weights."""
    if arch is None:
        raise ConfigError("tfnas_derived needs arch=PATH to a derived-architecture JSON file")
    if pretrained:
        raise ConfigError("tfnas_derived has no pretrained weights: train it from scratch")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return TimmMBV2Net(load_arch(arch), num_classes)


__all__ = ["TimmMBV2Net", "tfnas_derived", "build_model"]
