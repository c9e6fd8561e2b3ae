"""The typed schema of every config file, with its defaults.

Adding a key is one line in the section's class: ``name: type = Field(default, ge=..)``.
A config file states only what differs from these defaults; nested sections merge
key by key, except optimizer and lr-schedule specs, which replace the default as a
whole (their keys only make sense together), so they must name their ``name``.

* TF-NAS search (``configs/search/*.yaml``): ``TfnasSearchConfig``
* DARTS search (``configs/darts/*.yaml``): ``DartsSearchConfig`` with per-method options in
  ``METHOD_OPTIONS``; DARTS evaluation-net training: ``DartsTrainConfig``
* spaces: ``MBV2SpaceFile`` (``configs/spaces/*.yaml``), ``DartsCellSpace`` (``configs/darts/spaces.json``)
* ``tfnas train``: ``tfnas.training.TrainConfig``; derived-architecture files: ``ArchFile``
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from tfnas.config.loader import Options, Schema
from tfnas.errors import ConfigError

ACTIVATIONS = Literal["relu", "swish", "hswish"]
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---- shared pieces ----------------------------------------------------------------------------------------
class OptimizerSpec(Options):
    """``name`` and that optimizer's arguments (momentum/nesterov: sgd only; betas/eps: adam, adamw)."""

    name: Literal["sgd", "adam", "adamw"]
    lr: float = Field(gt=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool | None = None
    weight_decay: float | None = Field(None, ge=0)
    betas: list[float] | None = Field(None, min_length=2, max_length=2)
    eps: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fits_the_optimizer(self) -> OptimizerSpec:
        sgd_only = [k for k in ("momentum", "nesterov") if getattr(self, k) is not None]
        adam_only = [k for k in ("betas", "eps") if getattr(self, k) is not None]
        if self.name == "sgd" and adam_only:
            raise ValueError(f"{', '.join(adam_only)} is an adam/adamw argument, not one of sgd")
        if self.name != "sgd" and sgd_only:
            raise ValueError(f"{', '.join(sgd_only)} is an sgd argument, not one of {self.name}")
        if self.betas is not None and not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas = {self.betas}: expected two numbers in [0, 1)")
        return self


class ScheduleSpec(Options):
    """Learning-rate schedule: constant | cosine (to ``min_lr``) | step; optional linear warm-up."""

    name: Literal["constant", "cosine", "step"]
    min_lr: float | None = Field(None, ge=0)
    warmup_steps: int | None = Field(None, ge=0)
    step_size: int | None = Field(None, ge=1)
    gamma: float | None = Field(None, gt=0)


def sgd(lr: float, momentum: float, weight_decay: float) -> Any:
    return Field(default_factory=lambda: OptimizerSpec(name="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay))


def adam(lr: float, weight_decay: float) -> Any:
    return Field(
        default_factory=lambda: OptimizerSpec(name="adam", lr=lr, betas=[0.5, 0.999], weight_decay=weight_decay)
    )


def cosine(min_lr: float) -> Any:
    return Field(default_factory=lambda: ScheduleSpec(name="cosine", min_lr=min_lr))


def section(cls: type[Schema]) -> Any:
    return Field(default_factory=cls)


def _run_name(value: str) -> str:
    if not RUN_NAME.match(value):
        raise ValueError(
            "a run name is a plain file name (letters, digits, '_', '-', '.'; no '/' or '..'),"
            " because it names the default output folder runs/.../<name>"
        )
    return value


# ---- TF-NAS search ----------------------------------------------------------------------------------------
class TfnasData(Schema):
    source: str = "generated"  # 'generated', a CIFAR-10 folder or an ImageFolder tree
    resolution: int = Field(64, ge=4)  # proxy training resolution (independent of lut_resolution)
    num_classes: int | None = Field(None, ge=2)
    num_samples: int = Field(2000, ge=2)  # generated data only
    max_samples: int | None = Field(None, ge=1)  # cap on real training data
    held_out_fraction: float = Field(0.5, gt=0, lt=1)  # the architecture steps' split
    workers: int = Field(0, ge=0)


class TfnasSearch(Schema):
    epochs: int = Field(90, ge=1)
    warmup_epochs: int = Field(10, ge=0)  # weights only, single Gumbel path
    batch_size: int = Field(32, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the training split
    arch_every: int = Field(2, ge=1)  # an architecture step every k-th weight step
    sampling: str | list[str] = "gumbel_random"  # weight-step scheme (see sampling.WEIGHT_SCHEMES) or a list
    ops: list[str] | None = None  # subset of the space's ops to search (None: all)
    temperature: float = Field(5.0, gt=0)
    temperature_decay: float = Field(0.96, gt=0)  # per epoch
    latency_lambda: float = Field(0.1, ge=0)
    elastic: bool = True  # width scaling after each post-warm-up epoch
    elastic_step: float = Field(0.1, gt=0, lt=1)  # relative width step of the scaling
    width_align: int | None = Field(None, ge=1)  # allowed widths are multiples of this (None: the table's)
    final_tolerance: float = Field(0.003, gt=0, lt=0.5)  # derived predicted latency within this fraction
    measure_final: bool = False  # measure the derived net end to end and re-aim until it hits the target
    measure_tolerance: float = Field(0.02, gt=0, lt=1)
    measure_iterations: int = Field(3, ge=0)
    measure_rounds: int = Field(7, ge=1)  # a measurement is the median of this many timings

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
    schedule: ScheduleSpec = cosine(0.0)
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
    calibrated: bool = True  # apply the table's calibration to the latency term
    target_ms: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    out: str | None = None  # default: runs/search/<name>
    data: TfnasData = section(TfnasData)
    search: TfnasSearch = section(TfnasSearch)
    optim: TfnasOptim = section(TfnasOptim)
    runtime: TfnasRuntime = section(TfnasRuntime)


# ---- DARTS ------------------------------------------------------------------------------------------------
class DartsData(Schema):
    source: str = "generated"
    resolution: int = Field(32, ge=4)
    num_classes: int | None = Field(None, ge=2)
    num_samples: int = Field(2000, ge=2)  # generated data only
    max_samples: int | None = Field(None, ge=1)
    held_out_fraction: float = Field(0.5, gt=0, lt=1)
    batch_size: int = Field(32, ge=1)
    workers: int = Field(0, ge=0)
    augment: bool = False


class DartsRuntime(Schema):
    """What does not change the result: a resumed run may change it (``--resume --threads 2``)."""

    threads: int | None = Field(None, ge=1)
    channels_last: bool = True  # 3-4x faster depthwise convs on CPU (oneDNN)
    progress: bool | None = None


class DartsSupernetSection(Options):
    C: int = Field(16, ge=1)
    num_cells: int = Field(8, ge=3)  # reduction cells sit at 1/3 and 2/3 of the depth
    stem_multiplier: int | None = Field(None, ge=1)
    alpha_init_std: float | None = Field(None, ge=0)
    # structural options a method usually sets (its own values win)
    multi_level: bool | None = None
    partial_k: int | None = Field(None, ge=1)
    edge_norm: bool | None = None
    aux_skip: bool | None = None


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


class DeploySection(Options):
    """The deployed network the latency term describes (defaults: ``tfnas.latency.darts_bundle.DeployShape``)."""

    C: int | None = Field(None, ge=1)
    num_cells: int | None = Field(None, ge=3)
    resolution: int | None = Field(None, ge=4)
    batch: int | None = Field(None, ge=1)
    in_channels: int | None = Field(None, ge=1)
    num_classes: int | None = Field(None, ge=1)
    stem_multiplier: int | None = Field(None, ge=1)


class DartsLatency(Schema):
    table: str  # a LUT measured from `tfnas darts bundle`
    target_ms: float = Field(gt=0)
    lam: float = Field(0.1, ge=0, alias="lambda")
    kept_edges: bool = True
    deploy: DeploySection = section(DeploySection)


class DartsSearchConfig(Schema):
    space: str | dict[str, Any] = "s0"  # s0..s4 or an inline {normal, reduce}
    method: str | dict[str, Any] = Field(default_factory=lambda: {"name": "darts_1st"})  # see METHOD_OPTIONS
    supernet: DartsSupernetSection = section(DartsSupernetSection)
    data: DartsData = section(DartsData)
    search: DartsSearchSection = section(DartsSearchSection)
    runtime: DartsRuntime = section(DartsRuntime)
    hessian: DartsHessian = section(DartsHessian)
    latency: DartsLatency | None = None


# per-method options: one class per method; a new option is one line in its class
class MethodOptions(Options):
    """Options every method takes."""

    name: str
    second_order: bool | None = None
    entropy_gamma: float | None = Field(None, ge=0)  # adds gamma * entropy of the op weights
    entropy_reduction: Literal["mean", "sum"] | None = None  # over edges; the paper sums (default)
    arch_warmup_epochs: int | None = Field(None, ge=0)  # first epochs train weights only (PC-DARTS: 15)


class DartsMinusOptions(MethodOptions):
    beta_schedule: Literal["linear", "cosine"] | None = None
    beta_start: float | None = Field(None, ge=0)


class MultilevelEntropyOptions(MethodOptions):
    gamma: float | None = Field(None, ge=0)


class FairDartsOptions(MethodOptions):
    zero_one_weight: float | None = Field(None, ge=0)
    derive: Literal["threshold", "top2"] | None = None  # the official rule keeps edges >= threshold
    threshold: float | None = Field(None, gt=0, lt=1)


class PcDartsOptions(MethodOptions):
    partial_k: int | None = Field(None, ge=1)
    edge_norm: bool | None = None


class SdartsRsOptions(MethodOptions):
    eps_min: float | None = Field(None, ge=0)
    eps_max: float | None = Field(None, ge=0)


class SdartsAdvOptions(SdartsRsOptions):
    pgd_steps: int | None = Field(None, ge=1)


METHOD_OPTIONS: dict[str, type[MethodOptions]] = {
    "darts_1st": MethodOptions,
    "darts_2nd": MethodOptions,
    "darts_minus": DartsMinusOptions,
    "multilevel": MethodOptions,
    "multilevel_entropy": MultilevelEntropyOptions,
    "fair_darts": FairDartsOptions,
    "pc_darts": PcDartsOptions,
    "sdarts_rs": SdartsRsOptions,
    "sdarts_adv": SdartsAdvOptions,
}


def method_options_schema(method: dict[str, Any], source: str) -> type[MethodOptions]:
    """The options schema of ``method['name']``; an unknown or missing name names the known ones."""
    from tfnas.search.darts.methods import METHODS  # the registry of builders is the list of methods

    name = method.get("name")
    known = sorted(METHODS)
    if name is None:
        raise ConfigError(f"{source}: missing key 'method.name' (one of {', '.join(known)})")
    if not isinstance(name, str) or name not in METHODS:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: key 'method.name' = {name!r}: expected one of {', '.join(known)}{hint}")
    return METHOD_OPTIONS.get(name, MethodOptions)


class DartsNet(Options):
    C: int | None = Field(36, ge=1)
    num_cells: int | None = Field(20, ge=3)
    auxiliary: bool | None = True
    drop_path_prob: float | None = Field(0.2, ge=0, lt=1)
    stem_multiplier: int | None = Field(None, ge=1)


class DartsTrainData(Schema):
    source: str = "generated"
    resolution: int = Field(32, ge=4)
    num_classes: int | None = Field(None, ge=2)
    num_samples: int = Field(2000, ge=2)
    max_samples: int | None = Field(None, ge=1)
    batch_size: int = Field(96, ge=1)
    workers: int = Field(0, ge=0)
    augment: bool = False


class DartsTrainSection(Schema):
    moved: ClassVar[dict[str, str]] = {"threads": "runtime.threads", "channels_last": "runtime.channels_last"}

    epochs: int = Field(600, ge=1)
    seed: int = Field(0, ge=0)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    auxiliary_weight: float = Field(0.4, ge=0)
    grad_clip: float | None = Field(5.0, ge=0)
    optimizer: OptimizerSpec = sgd(0.025, 0.9, 3e-4)
    schedule: ScheduleSpec = cosine(0.0)
    log_every: int = Field(1, ge=1)


class DartsTrainConfig(Schema):
    setting: Literal["cifar", "imagenet"] = "cifar"
    net: DartsNet = section(DartsNet)
    data: DartsTrainData = section(DartsTrainData)
    train: DartsTrainSection = section(DartsTrainSection)
    runtime: DartsRuntime = section(DartsRuntime)


# ---- spaces -----------------------------------------------------------------------------------------------
class SpaceInput(Schema):
    resolution: int = Field(ge=8)
    channels: int = Field(3, ge=1)


class SpaceStem(Schema):
    out: int = Field(ge=1)
    kernel: Literal[1, 3, 5, 7]
    stride: Literal[1, 2]
    act: ACTIVATIONS


class SpaceFirstBlock(Schema):
    kernel: Literal[3, 5, 7]
    mid: int = Field(ge=1)
    out: int = Field(ge=1)
    stride: Literal[1, 2]
    se: bool = False
    act: ACTIVATIONS


class SpaceStage(Schema):
    layers: int = Field(ge=1)
    out: int = Field(ge=1)
    stride: Literal[1, 2]
    act: ACTIVATIONS


class SpaceHead(Schema):
    out: int = Field(ge=1)
    act: ACTIVATIONS
    dropout: float = Field(0.0, ge=0, lt=1)


class SpaceOp(Schema):
    kernel: Literal[3, 5, 7]
    expansion: int = Field(ge=1)
    se: bool = False


class SpaceWidth(Schema):
    bound_factor: dict[int, int] = Field(min_length=1)  # expansion -> mid-width bound factor
    min_fraction: float = Field(gt=0, le=1)
    se_factor: dict[int, int] = Field(default_factory=dict)  # expansion -> SE width factor

    @model_validator(mode="after")
    def _positive_factors(self) -> SpaceWidth:
        for name in ("bound_factor", "se_factor"):
            bad = {k: v for k, v in getattr(self, name).items() if k < 1 or v < 1}
            if bad:
                raise ValueError(f"{name} {bad}: expansions and factors must be integers >= 1")
        return self


class MBV2SpaceFile(Schema):
    name: str = Field(min_length=1)
    input: SpaceInput
    num_classes: int = Field(ge=1)
    stem: SpaceStem
    first_block: SpaceFirstBlock
    stages: list[SpaceStage] = Field(min_length=1)
    head: SpaceHead
    ops: dict[str, SpaceOp] = Field(min_length=1)
    width: SpaceWidth


class DartsCellSpace(Schema):
    """One space of ``configs/darts/spaces.json``: per edge, its candidate op names."""

    name: str | None = None  # inline spaces in a search config may name themselves
    normal: list[list[str]] = Field(min_length=1)
    reduce: list[list[str]] = Field(min_length=1)


# ---- derived-architecture files ---------------------------------------------------------------------------
class ArchLayer(Schema):
    op: str
    width: int


class ArchStage(Schema):
    depth: int
    layers: list[ArchLayer]


class ArchFile(Schema):
    format: str
    version: int
    space: str
    resolution: int | None = Field(None, ge=8)
    stages: list[ArchStage]
    meta: dict[str, Any] = Field(default_factory=dict)
