"""Config pieces every trainer shares: an optimizer and a learning-rate schedule, with their defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from tfnas.config.loader import Schema


class OptimizerSpec(Schema):
    """``name`` and that optimizer's arguments (momentum/nesterov: sgd only; betas/eps: adam, adamw)."""

    name: Literal["sgd", "adam", "adamw"]
    lr: float = Field(gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: list[float] = Field([0.9, 0.999], min_length=2, max_length=2)
    eps: float = Field(1e-8, gt=0)

    @model_validator(mode="after")
    def _fits_the_optimizer(self) -> OptimizerSpec:
        given = self.model_fields_set
        sgd_only = [k for k in ("momentum", "nesterov") if k in given]
        adam_only = [k for k in ("betas", "eps") if k in given]
        if self.name == "sgd" and adam_only:
            raise ValueError(f"{', '.join(adam_only)} is an adam/adamw argument, not one of sgd")
        if self.name != "sgd" and sgd_only:
            raise ValueError(f"{', '.join(sgd_only)} is an sgd argument, not one of {self.name}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas = {self.betas}: expected two numbers in [0, 1)")
        return self

    @model_serializer(mode="wrap")
    def _own_arguments(self, handler: Any) -> dict[str, Any]:
        """Only this optimizer's arguments, so a saved config validates again."""
        other = ("betas", "eps") if self.name == "sgd" else ("momentum", "nesterov")
        return {k: v for k, v in handler(self).items() if k not in other}


class ScheduleSpec(Schema):
    """Learning-rate schedule: constant | cosine (to ``min_lr``) | step; optional linear warm-up.

    ``per``: the schedule advances every step, or once per epoch (TF-NAS's official search
    steps its cosine per epoch); ``warmup_steps`` and ``step_size`` count in that unit.
    """

    name: Literal["constant", "cosine", "step"]
    min_lr: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    warmup_epochs: int = Field(0, ge=0)  # added to warmup_steps, in epochs
    step_size: int | None = Field(None, ge=1)  # None: the whole run (no decay)
    gamma: float = Field(0.1, gt=0)
    per: Literal["step", "epoch"] = "step"


def sgd(lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> Any:
    return Field(
        default_factory=lambda: OptimizerSpec(
            name="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    )


def adam(lr: float, weight_decay: float, betas: tuple[float, float] = (0.5, 0.999)) -> Any:
    return Field(
        default_factory=lambda: OptimizerSpec(name="adam", lr=lr, betas=list(betas), weight_decay=weight_decay)
    )


def cosine(min_lr: float, per: Literal["step", "epoch"] = "step") -> Any:
    return Field(default_factory=lambda: ScheduleSpec(name="cosine", min_lr=min_lr, per=per))


def section(cls: type[Schema]) -> Any:
    return Field(default_factory=cls)
