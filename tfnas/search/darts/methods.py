"""DARTS-family search methods as plain data, built by name from a config dict.

A method is a bundle of choices the shared bilevel trainer consults:

* ``supernet``: structural supernet options (partial channels, edge
  normalisation, auxiliary skip, multi-level alphas);
* ``normalize``: how alphas become op weights (softmax; Fair DARTS: sigmoid);
* ``second_order``: unrolled architecture gradient;
* ``regularizers``: extra terms on the architecture (validation) loss:
  entropy, zero-one, latency, composable with any method;
* ``perturb``: SDARTS perturbation of the op weights during the weight step;
* ``aux_beta``: DARTS- auxiliary-skip weight as a function of search progress.

Adding a method means registering one builder; the trainer has no per-method branches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from tfnas.errors import ConfigError
from tfnas.search.darts.supernet import ArchWeights, DartsSupernet

Normalizer = Callable[[torch.Tensor], torch.Tensor]


class ArchRegularizer(Protocol):
    name: str

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor: ...


class Perturbation(Protocol):
    def __call__(
        self,
        model: DartsSupernet,
        weights: ArchWeights,
        x: torch.Tensor,
        y: torch.Tensor,
        criterion: nn.Module,
        progress: float,
    ) -> ArchWeights: ...


def softmax(a: torch.Tensor) -> torch.Tensor:
    return torch.softmax(a, dim=-1)


NORMALIZERS: dict[str, Normalizer] = {"softmax": softmax, "sigmoid": torch.sigmoid}


@dataclass
class SearchMethod:
    name: str
    normalize_name: str = "softmax"
    second_order: bool = False
    supernet: dict[str, Any] = field(default_factory=dict)
    regularizers: list[ArchRegularizer] = field(default_factory=list)
    perturb: Perturbation | None = None
    aux_beta: Callable[[float], float] | None = None

    @property
    def normalize(self) -> Normalizer:
        return NORMALIZERS[self.normalize_name]


# ---------------------------------------------------------------- regularizers
def _op_weights(weights: ArchWeights) -> list[torch.Tensor]:
    return [weights["normal"], weights["reduce"]]


@dataclass
class EntropyLoss:
    """gamma * H(alpha weights): pushes each edge towards one op, narrowing the derivation gap."""

    gamma: float = 1.0
    reduction: str = "mean"  # mean over edges, or 'sum' as in the paper's formula
    name: str = "entropy"

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor:
        ent = [-(w * torch.log(w.clamp_min(1e-12))).sum(-1) for w in _op_weights(weights)]
        flat = torch.cat([e.flatten() for e in ent])
        return self.gamma * (flat.sum() if self.reduction == "sum" else flat.mean())


@dataclass
class ZeroOneLoss:
    """Fair DARTS: -w * mean((sigmoid(alpha) - 0.5)^2) drives every op weight towards 0 or 1."""

    weight: float = 10.0
    name: str = "zero_one"

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor:
        flat = torch.cat([w.flatten() for w in _op_weights(weights)])
        return -self.weight * ((flat - 0.5) ** 2).mean()


# ---------------------------------------------------------------- SDARTS perturbations
def _epsilon(eps_min: float, eps_max: float, progress: float) -> float:
    return eps_min + (eps_max - eps_min) * progress


@dataclass
class RandomSmoothing:
    """SDARTS-RS: uniform noise in [-eps, eps] on the op weights for each weight step."""

    eps_min: float = 0.03
    eps_max: float = 0.3

    def __call__(self, model, weights, x, y, criterion, progress):  # noqa: ANN001, ANN204
        eps = _epsilon(self.eps_min, self.eps_max, progress)
        out = dict(weights)
        for k in ("normal", "reduce"):
            w = weights[k].detach()
            out[k] = w + torch.empty_like(w).uniform_(-eps, eps)
        return out


@dataclass
class AdversarialPerturbation:
    """SDARTS-ADV: PGD on the op weights (L-inf ball of radius eps) maximising the training loss."""

    eps_min: float = 0.03
    eps_max: float = 0.3
    steps: int = 7
    step_size: float | None = None  # default 2.5 * eps / steps
    random_start: bool = True

    def __call__(self, model, weights, x, y, criterion, progress):  # noqa: ANN001, ANN204
        eps = _epsilon(self.eps_min, self.eps_max, progress)
        step = self.step_size or 2.5 * eps / max(self.steps, 1)
        base = {k: weights[k].detach() for k in ("normal", "reduce")}
        delta = {
            k: (torch.empty_like(v).uniform_(-eps, eps) if self.random_start else torch.zeros_like(v))
            for k, v in base.items()
        }
        fixed = {k: v.detach() for k, v in weights.items() if k not in base}
        was_training = model.training
        for _ in range(self.steps):
            for d in delta.values():
                d.requires_grad_(True)
            w = {**fixed, **{k: (base[k] + delta[k]).clamp(0.0, 1.0) for k in base}}
            loss = criterion(model(x, w), y)
            grads = torch.autograd.grad(loss, list(delta.values()))
            with torch.no_grad():
                delta = {k: (d + step * g.sign()).clamp(-eps, eps) for (k, d), g in zip(delta.items(), grads)}
        model.train(was_training)
        return {**weights, **{k: (base[k] + delta[k]).clamp(0.0, 1.0).detach() for k in base}}


# ---------------------------------------------------------------- DARTS- beta schedules
def beta_schedule(kind: str, start: float = 1.0) -> Callable[[float], float]:
    """Auxiliary-skip weight over progress in [0, 1]: from ``start`` to exactly 0 at the end."""
    if kind == "linear":
        return lambda p: start * (1.0 - min(max(p, 0.0), 1.0))
    if kind == "cosine":
        return lambda p: start * 0.5 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))
    raise ConfigError(f"unknown DARTS- beta schedule {kind!r}; use 'linear' or 'cosine'")


# ---------------------------------------------------------------- registry
MethodBuilder = Callable[[dict[str, Any]], SearchMethod]
METHODS: dict[str, MethodBuilder] = {}


def register_method(name: str) -> Callable[[MethodBuilder], MethodBuilder]:
    def deco(fn: MethodBuilder) -> MethodBuilder:
        METHODS[name] = fn
        return fn

    return deco


@register_method("darts_1st")
def _darts_1st(cfg: dict[str, Any]) -> SearchMethod:
    return SearchMethod("darts_1st")


@register_method("darts_2nd")
def _darts_2nd(cfg: dict[str, Any]) -> SearchMethod:
    return SearchMethod("darts_2nd", second_order=True)


@register_method("darts_minus")
def _darts_minus(cfg: dict[str, Any]) -> SearchMethod:
    sched = beta_schedule(cfg.get("beta_schedule", "linear"), float(cfg.get("beta_start", 1.0)))
    return SearchMethod("darts_minus", supernet={"aux_skip": True}, aux_beta=sched)


@register_method("multilevel")
def _multilevel(cfg: dict[str, Any]) -> SearchMethod:
    return SearchMethod("multilevel", supernet={"multi_level": True})


@register_method("multilevel_entropy")
def _multilevel_entropy(cfg: dict[str, Any]) -> SearchMethod:
    ent = EntropyLoss(float(cfg.get("gamma", 1.0)), cfg.get("entropy_reduction", "mean"))
    return SearchMethod("multilevel_entropy", supernet={"multi_level": True}, regularizers=[ent])


@register_method("fair_darts")
def _fair_darts(cfg: dict[str, Any]) -> SearchMethod:
    zo = ZeroOneLoss(float(cfg.get("zero_one_weight", 10.0)))
    return SearchMethod("fair_darts", normalize_name="sigmoid", regularizers=[zo])


@register_method("pc_darts")
def _pc_darts(cfg: dict[str, Any]) -> SearchMethod:
    k = int(cfg.get("partial_k", 4))
    return SearchMethod("pc_darts", supernet={"partial_k": k, "edge_norm": bool(cfg.get("edge_norm", True))})


def _sdarts_kwargs(cfg: dict[str, Any]) -> dict[str, float]:
    return {"eps_min": float(cfg.get("eps_min", 0.03)), "eps_max": float(cfg.get("eps_max", 0.3))}


@register_method("sdarts_rs")
def _sdarts_rs(cfg: dict[str, Any]) -> SearchMethod:
    return SearchMethod("sdarts_rs", perturb=RandomSmoothing(**_sdarts_kwargs(cfg)))


@register_method("sdarts_adv")
def _sdarts_adv(cfg: dict[str, Any]) -> SearchMethod:
    adv = AdversarialPerturbation(**_sdarts_kwargs(cfg), steps=int(cfg.get("pgd_steps", 7)))
    return SearchMethod("sdarts_adv", perturb=adv)


def build_method(cfg: dict[str, Any] | str) -> SearchMethod:
    """Build from ``{"name": ..., **options}``. Common options for any method:
    ``second_order`` (bool), ``entropy_gamma`` (adds the entropy loss)."""
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    name = cfg.get("name")
    if name not in METHODS:
        raise ConfigError(f"unknown DARTS method {name!r}; choose from {', '.join(sorted(METHODS))}")
    method = METHODS[name](cfg)
    if "second_order" in cfg:
        method.second_order = bool(cfg["second_order"])
    if cfg.get("entropy_gamma") and not any(r.name == "entropy" for r in method.regularizers):
        method.regularizers.append(EntropyLoss(float(cfg["entropy_gamma"])))
    return method
