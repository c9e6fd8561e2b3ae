"""DARTS configs: search (``configs/darts/*.yaml``) and evaluation-network training, with their defaults.

One table holds the published settings of the evaluation networks (``SETTINGS``: DARTS's CIFAR
and ImageNet mobile recipes); a training config is merged onto its setting's defaults once, key
by key, before validation, so a CIFAR default can never leak into an ImageNet run. A method's
options (``method:``) are validated by that method's schema (``tfnas.darts.methods.METHODS``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from tfnas.config.loader import (
    OptimizerSpec,
    ScheduleSpec,
    Schema,
    adam,
    apply_overrides,
    cosine,
    load_file,
    section,
    sgd,
    validate,
)
from tfnas.darts.methods import METHODS, DartsFirstOrder, MethodOptions
from tfnas.darts.shapes import SETTINGS, DartsNet, DeployShape, SupernetSection
from tfnas.darts.space import CellSpace, load_cell_space
from tfnas.errors import ConfigError
from tfnas.registry import did_you_mean
from tfnas.train.loop import TrainRecipe


class DartsData(Schema):
    source: str = "generated"  # 'generated', a CIFAR-10 folder or an ImageFolder tree
    resolution: int = Field(32, ge=4)
    num_classes: int | None = Field(None, ge=2)
    num_samples: int = Field(2000, ge=2)  # generated data only
    max_samples: int | None = Field(None, ge=1)
    held_out_fraction: float = Field(0.5, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)  # the official search's
    workers: int = Field(0, ge=0)
    augment: bool = True  # real data: pad-crop + flip on both search splits (the official search); not generated


class DartsRuntime(Schema):
    """What does not change the result: a resumed run may change it (``--resume --threads 2``)."""

    threads: int | None = Field(None, ge=1)
    channels_last: bool = True  # 3-4x faster depthwise convs on CPU (oneDNN)
    progress: bool | None = None


class DartsSearchSection(Schema):
    moved: ClassVar[dict[str, str]] = {"threads": "runtime.threads", "channels_last": "runtime.channels_last"}

    epochs: int = Field(50, ge=1)
    seed: int = Field(0, ge=0)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(5.0, ge=0)
    w_optimizer: OptimizerSpec = sgd(0.025, 0.9, 3e-4)
    w_schedule: ScheduleSpec = cosine(0.001)
    a_optimizer: OptimizerSpec = adam(3e-4, 1e-3)
    log_every: int = Field(1, ge=1)


class EarlyStop(Schema):
    window: int = Field(5, ge=1)
    ratio: float = Field(1.3, gt=0)


class DartsHessian(Schema):
    every: int = Field(0, ge=0)  # 0: never
    iters: int = Field(20, ge=1)
    early_stop: EarlyStop | None = None


class DartsLatency(Schema):
    table: str  # a LUT measured from `tfnas darts bundle`
    target_ms: float = Field(gt=0)
    lam: float = Field(0.1, ge=0, alias="lambda")
    kept_edges: bool = True
    deploy: DeployShape = section(DeployShape)


class DartsSearchConfig(Schema):
    space: CellSpace = Field(default_factory=lambda: load_cell_space("s0"))  # s0..s4 or an inline {normal, reduce}
    method: SerializeAsAny[MethodOptions] = Field(default_factory=DartsFirstOrder)
    supernet: SupernetSection = section(SupernetSection)
    data: DartsData = section(DartsData)
    search: DartsSearchSection = section(DartsSearchSection)
    runtime: DartsRuntime = section(DartsRuntime)
    hessian: DartsHessian = section(DartsHessian)
    latency: DartsLatency | None = None

    @field_validator("space", mode="before")
    @classmethod
    def _space_by_name(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        try:
            return load_cell_space(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @field_validator("method", mode="before")
    @classmethod
    def _method_by_name(cls, v: Any) -> Any:
        """``darts_1st`` or ``{name: ..., options}``: validated by that method's own options schema."""
        if isinstance(v, MethodOptions):
            return v
        if isinstance(v, str):
            v = {"name": v}
        if not isinstance(v, dict) or "name" not in v:
            raise ValueError(f"a method is a name or a mapping with 'name' (one of {', '.join(METHODS)})")
        if v["name"] not in METHODS:
            known = METHODS.names()
            raise ValueError(
                f"name = {v['name']!r}: unknown method (choose from {', '.join(known)}){did_you_mean(v['name'], known)}"
            )
        return METHODS.get(v["name"]).model_validate(v)

    @model_validator(mode="after")
    def _structure_fits(self) -> DartsSearchConfig:
        k = self.method.structure().partial_k
        if self.supernet.C % k:
            raise ValueError(f"supernet.C = {self.supernet.C} is not a multiple of partial_k = {k} (PC-DARTS channels)")
        return self


def resolve_search_config(data: Any = None, source: str = "<DARTS config>") -> DartsSearchConfig:
    return validate(DartsSearchConfig, data, source)


def load_search_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> DartsSearchConfig:
    return load_file(path, DartsSearchConfig, "DARTS config", overrides)


class DartsTrainData(DartsData):
    held_out_fraction: float = Field(0.0, ge=0, lt=1)  # not used: training takes the whole training split
    cutout: int = Field(0, ge=0)  # side of DARTS's cutout square on training images (CIFAR setting: 16; 0: off)


class DartsTrainRecipe(TrainRecipe):
    auxiliary_weight: float = Field(0.4, ge=0)
    grad_clip: float | None = Field(5.0, ge=0)


class DartsTrainConfig(Schema):
    setting: Literal["cifar", "imagenet"] = "cifar"
    net: DartsNet = section(DartsNet)
    data: DartsTrainData = section(DartsTrainData)
    train: DartsTrainRecipe = section(DartsTrainRecipe)
    runtime: DartsRuntime = section(DartsRuntime)

    @model_validator(mode="before")
    @classmethod
    def _setting_defaults(cls, data: Any) -> Any:
        """The setting's defaults under the file's own keys, section by section (specs replaced whole)."""
        if not isinstance(data, dict):
            return data
        setting = data.get("setting", "cifar")
        if setting not in SETTINGS:
            return data  # the schema reports the bad setting
        out = copy.deepcopy(dict(data))
        for name, defaults in SETTINGS[setting].items():
            given = out.get(name)
            if given is None:
                out[name] = copy.deepcopy(defaults)
            elif isinstance(given, dict):
                merged = copy.deepcopy(defaults)
                merged.update(given)  # an optimizer or schedule given by the file replaces the default one whole
                out[name] = merged
        return out


def resolve_train_config(data: Any = None, source: str = "<DARTS train config>") -> DartsTrainConfig:
    return validate(DartsTrainConfig, data, source)


def load_train_config(
    path: str | Path | None, overrides: Mapping[str, Any] | None = None, source: str = "tfnas darts train"
) -> DartsTrainConfig:
    """The training config of the YAML file ``path``, or (``None``) the setting's defaults; ``overrides``:
    dotted keys (``train.epochs``) validated with it, ``source`` naming where they came from."""
    if path is None:
        return validate(DartsTrainConfig, apply_overrides({}, overrides), source)
    return load_file(path, DartsTrainConfig, "DARTS train config", overrides)
