"""The TF-NAS search config: its schema with the reference defaults, and how to read one.

Defaults are the TF-NAS reference schedule (90 epochs, 10 warm-up, SGD 0.025
cosine, Adam 0.01 (0.5, 0.999) 5e-4, temperature 5.0 x 0.96 per epoch,
lambda 0.1, an architecture step every 2nd weight step); a config file only
states what differs. Errors name the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tfnas.config.loader import OptimizerSpec, ScheduleSpec, Schema, adam, cosine, load_file, section, sgd, validate
from tfnas.registry import Registry

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# runtime.autocast -> the torch dtype's attribute name (no torch import here); runtime.autocast: null is fp32
AUTOCAST_DTYPES: Registry[str] = Registry("autocast dtype")
AUTOCAST_DTYPES.add("bf16", "bfloat16")
AUTOCAST_DTYPES.add("fp16", "float16")


def _run_name(value: str) -> str:
    if not RUN_NAME.match(value):
        raise ValueError(
            "a run name is a plain file name (letters, digits, '_', '-', '.'; no '/' or '..'),"
            " because it names the default output folder runs/.../<name>"
        )
    return value


class TfnasData(Schema):
    source: str = "generated"  # 'generated', 'generated:<task>', 'digits', a CIFAR-10 folder or an ImageFolder tree
    resolution: int = Field(224, ge=4)  # training resolution (the reference: 224; independent of lut_resolution)
    num_classes: int | None = Field(None, ge=2)
    num_samples: int = Field(2000, ge=2)  # generated data only
    max_samples: int | None = Field(None, ge=1)  # cap on real training data
    held_out_fraction: float = Field(0.2, gt=0, lt=1)  # the architecture steps' split (the reference: 80/20)
    # real data: the reference's RandomResizedCrop + flip + colour jitter on the weights' split (a CIFAR folder:
    # pad-crop + flip); the architecture's split is never augmented; generated data has its own variation
    augment: bool = True
    workers: int = Field(0, ge=0)


class TfnasSearch(Schema):
    epochs: int = Field(90, ge=1)
    warmup_epochs: int = Field(10, ge=0)  # weights only, single Gumbel path
    batch_size: int = Field(32, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the training split
    arch_every: int = Field(2, ge=1)  # an architecture step every k-th weight step
    sampling: str | list[str] = "gumbel_random"  # weight-step scheme (see steps.WEIGHT_SCHEMES) or a list
    ops: list[str] | None = None  # subset of the space's ops to search (None: all)
    temperature: float = Field(5.0, gt=0)
    temperature_decay: float = Field(0.96, gt=0)  # per epoch
    latency_lambda: float = Field(0.1, ge=0)
    bn: Literal["plain", "affine"] = "plain"  # the reference: supernet BNs without affine parameters
    # independent: each candidate op its own weights (the reference); shared: a layer's candidates are views
    # of one superkernel (tfnas/mbv2/search/layers.py)
    op_weights: Literal["independent", "shared"] = "independent"
    aligned_start: bool | None = None  # a layer's candidates start as one function (None: with shared weights)
    optimizer_reset: Literal["epoch", "never"] = "epoch"  # the reference builds both optimisers anew each epoch
    elastic: bool = True  # width scaling after each post-warm-up epoch
    elastic_rule: Literal["tfnas", "grid"] = "tfnas"  # tfnas: the reference's; grid: 10% steps on the table's grid
    elastic_step: float = Field(0.1, gt=0, lt=1)  # relative width step of the grid rule
    width_align: int | None = Field(None, ge=1)  # allowed widths are multiples of this (None: the table's)
    final_tolerance: float = Field(0.003, gt=0, lt=0.5)  # derived predicted latency within this fraction
    measure_final: bool = False  # measure the derived net end to end and re-aim until it hits the target
    measure_tolerance: float = Field(0.02, gt=0, lt=1)
    measure_iterations: int = Field(3, ge=0)
    measure_rounds: int = Field(7, ge=1)  # a measurement is the median of this many timings
    # measurements of one network pooled before the loop acts on it, each in a fresh process (measured: one
    # measurement's figure moved 1.9-3.2% run to run while stating 0.8%); fewer when the target is clearly missed
    measure_pool: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _some_architecture_steps(self) -> TfnasSearch:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs = {self.warmup_epochs} with epochs = {self.epochs}: no architecture step would"
                " run, so nothing would be searched; use warmup_epochs < epochs"
            )
        return self


class TfnasOptim(Schema):
    weights: OptimizerSpec = sgd(0.025, 0.9, 1.0e-5)
    schedule: ScheduleSpec = cosine(0.0, per="epoch")  # the reference steps its cosine once per epoch
    grad_clip: float | None = Field(5.0, ge=0)
    arch: OptimizerSpec = adam(0.01, 5.0e-4)


class TfnasRuntime(Schema):
    threads: int | None = Field(None, ge=1)  # torch intra-op threads (None: leave torch's default)
    channels_last: bool = True
    mixed_op: Literal["loop", "fused"] = "loop"  # loop: op by op (fastest on CPU) | fused: shared convs
    autocast: Literal["bf16", "fp16"] | None = None  # None: fp32
    checkpoint_every_steps: int = Field(0, ge=0)  # 0: checkpoint at epoch ends only
    # An epoch-end checkpoint (the supernet and its momentum: 357 MB for the ImageNet space) is skipped when the
    # last one is younger than this; the last epoch and a requested stop always save. 0: after every epoch.
    checkpoint_min_interval_s: float = Field(60.0, ge=0)
    progress: bool | None = None  # tqdm bars on a terminal, plain lines otherwise (None), or never (false)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    stop_after_steps: int | None = Field(None, ge=1)  # testing aid: stop as if interrupted


class TfnasSearchConfig(Schema):
    """Defaults: the TF-NAS reference schedule (90 epochs, 10 warm-up, SGD 0.025 cosine, Adam 0.01)."""

    name: Annotated[str, AfterValidator(_run_name)] = "tfnas_search"
    space: str = "tfnas_imagenet"
    lut: str | None = None  # path to a latency table (required to run)
    lut_resolution: int | None = Field(None, ge=8)  # deployment resolution; default: the table's
    # deployment precision: lut: auto takes (or profiles) a table of it; a named table must be of it.
    # None: the named table's own, fp32 with lut: auto
    precision: Literal["fp32", "int8"] | None = None
    calibrated: bool = True  # apply the table's calibration to the latency term
    target_ms: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    out: str | None = None  # default: runs/search/<name>
    data: TfnasData = section(TfnasData)
    search: TfnasSearch = section(TfnasSearch)
    optim: TfnasOptim = section(TfnasOptim)
    runtime: TfnasRuntime = section(TfnasRuntime)


def resolve_config(data: dict[str, Any] | None = None, source: str = "<config>") -> TfnasSearchConfig:
    """Defaults overlaid with ``data``, every key, type and range checked (a ``ConfigError`` naming ``source``)."""
    return validate(TfnasSearchConfig, data, source)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TfnasSearchConfig:
    """A search config file with command-line ``overrides`` (dotted keys) applied before validation."""
    return load_file(path, TfnasSearchConfig, "search config", overrides)


DEFAULTS = resolve_config({}, "<defaults>")
