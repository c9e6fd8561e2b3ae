"""DARTS-family search methods as plain data, built by name from a config dict.

A method is a bundle of choices the shared bilevel trainer consults:

* ``supernet``: structural supernet options (partial channels, edge
  normalisation, auxiliary skip, multi-level alphas);
* ``normalize``: how alphas become op weights (softmax; Fair DARTS: sigmoid);
* ``second_order``: unrolled architecture gradient;
* ``regularizers``: extra terms on the architecture (validation) loss:
  entropy, zero-one, latency, composable with any method;
* ``perturb``: SDARTS perturbation of the op weights during the weight step;
* ``aux_beta``: DARTS- auxiliary-skip weight as a function of search progress;
* ``derive`` / ``derive_options``: the genotype derivation rule (``derive.DERIVE_RULES``);
* ``arch_warmup_epochs``: first epochs train the weights only (PC-DARTS: 15).

Every default is the published method's (its paper and official code);
where an option keeps another behaviour, its docstring says so.

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
from tfnas.search.darts.derive import get_rule
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
    derive: str = "top2"
    derive_options: dict[str, float] = field(default_factory=dict)
    arch_warmup_epochs: int = 0

    @property
    def normalize(self) -> Normalizer:
        return NORMALIZERS[self.normalize_name]


# ---------------------------------------------------------------- regularizers
def _op_weights(weights: ArchWeights) -> list[torch.Tensor]:
    return [weights["normal"], weights["reduce"]]


ENTROPY_REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"sum": torch.sum, "mean": torch.mean}


@dataclass
class EntropyLoss:
    """gamma * H(alpha weights): pushes each edge towards one op, narrowing the derivation gap.

    ``reduction='sum'`` (default) is the paper's L_entropy, summed over every edge of every alpha set,
    with gamma = 1. ``'mean'`` (an option) averages over the edges: with 70 edges that acts like
    gamma / 70.
    """

    gamma: float = 1.0
    reduction: str = "sum"
    name: str = "entropy"

    def __post_init__(self) -> None:
        if self.reduction not in ENTROPY_REDUCTIONS:
            raise ConfigError(f"entropy reduction {self.reduction!r}: choose from {', '.join(ENTROPY_REDUCTIONS)}")

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor:
        ent = [-(w * torch.log(w.clamp_min(1e-12))).sum(-1) for w in _op_weights(weights)]
        flat = torch.cat([e.flatten() for e in ent])
        return self.gamma * ENTROPY_REDUCTIONS[self.reduction](flat)


@dataclass
class ZeroOneLoss:
    """Fair DARTS: -w * mean((sigmoid(alpha) - 0.5)^2) drives every op weight towards 0 or 1."""

    weight: float = 10.0
    name: str = "zero_one"

    def __call__(self, model: DartsSupernet, weights: ArchWeights, progress: float) -> torch.Tensor:
        flat = torch.cat([w.flatten() for w in _op_weights(weights)])
        return -self.weight * ((flat - 0.5) ** 2).mean()


# ---------------------------------------------------------------- SDARTS perturbations
# As in the official SmoothDARTS code: the perturbed op weights stay a distribution per edge (each row
# clamped to [0, 1] and renormalised), eps grows linearly per epoch from eps_min to
# eps_min + (eps_max - eps_min) * (epochs - 1) / epochs (``progress`` = epoch / epochs).
PERTURBED = ("normal", "reduce")


def _epsilon(eps_min: float, eps_max: float, progress: float) -> float:
    return eps_min + (eps_max - eps_min) * progress


def project_rows(w: torch.Tensor) -> torch.Tensor:
    """Each edge's op weights (last dim) clamped to [0, 1] and divided by their sum; a row that clamps
    to all zeros puts 1 on its (pre-clamp) largest entry."""
    top = torch.nn.functional.one_hot(w.argmax(-1), w.shape[-1]).to(w.dtype)
    c = w.clamp(0.0, 1.0)
    c = torch.where(c.sum(-1, keepdim=True) == 0, top, c)
    return c / c.sum(-1, keepdim=True)


@dataclass
class RandomSmoothing:
    """SDARTS-RS: uniform noise in [-eps, eps] on the op weights of each weight step, projected per edge."""

    eps_min: float = 0.03
    eps_max: float = 0.3

    def __call__(self, model, weights, x, y, criterion, progress):  # noqa: ANN001, ANN204
        eps = _epsilon(self.eps_min, self.eps_max, progress)
        out = dict(weights)
        for k in PERTURBED:
            w = weights[k].detach()
            out[k] = project_rows(w + torch.empty_like(w).uniform_(-eps, eps))
        return out


@dataclass
class AdversarialPerturbation:
    """SDARTS-ADV: PGD on the op weights in an L-inf ball of radius eps, maximising the training loss.

    As the official attack: the network runs in eval mode (BN on running statistics); a random start in
    the ball; ``steps`` signed-gradient ascent steps of ``2 * eps / steps``, each projected back into the
    ball around the clean weights and then per edge onto [0, 1] with rows summing to 1; the attack is
    dropped (clean weights kept) when it did not raise the loss.
    """

    eps_min: float = 0.03
    eps_max: float = 0.3
    steps: int = 7
    step_size: float | None = None  # default 2 * eps / steps
    random_start: bool = True

    def __call__(self, model, weights, x, y, criterion, progress):  # noqa: ANN001, ANN204
        eps = _epsilon(self.eps_min, self.eps_max, progress)
        step = self.step_size or 2.0 * eps / max(self.steps, 1)
        clean = {k: weights[k].detach() for k in PERTURBED}
        fixed = {k: v.detach() for k, v in weights.items() if k not in clean}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                loss_before = float(criterion(model(x, {**fixed, **clean}), y))
            w = dict(clean)
            if self.random_start:
                w = {k: project_rows(v + torch.empty_like(v).uniform_(-eps, eps)) for k, v in w.items()}
            for _ in range(self.steps):
                w = {k: v.detach().requires_grad_(True) for k, v in w.items()}
                loss = criterion(model(x, {**fixed, **w}), y)
                grads = torch.autograd.grad(loss, list(w.values()))
                with torch.no_grad():
                    w = {
                        k: project_rows(clean[k] + (v + step * g.sign() - clean[k]).clamp(-eps, eps))
                        for (k, v), g in zip(w.items(), grads)
                    }
            with torch.no_grad():
                loss_after = float(criterion(model(x, {**fixed, **w}), y))
        finally:
            model.train(was_training)
        if loss_before > loss_after:
            w = clean
        return {**weights, **{k: v.detach() for k, v in w.items()}}


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
    ent = EntropyLoss(float(cfg.get("gamma", 1.0)), cfg.get("entropy_reduction", "sum"))
    return SearchMethod("multilevel_entropy", supernet={"multi_level": True}, regularizers=[ent])


@register_method("fair_darts")
def _fair_darts(cfg: dict[str, Any]) -> SearchMethod:
    """Sigmoid weights, zero-one loss, and Fair DARTS's own derivation: an edge stays when its best op
    weight is >= ``threshold`` (0.85). ``derive: top2`` keeps the DARTS rule instead (an option)."""
    zo = ZeroOneLoss(float(cfg.get("zero_one_weight", 10.0)))
    rule = cfg.get("derive", "threshold")
    options = {"threshold": float(cfg.get("threshold", 0.85))} if rule == "threshold" else {}
    return SearchMethod("fair_darts", normalize_name="sigmoid", regularizers=[zo], derive=rule, derive_options=options)


@register_method("pc_darts")
def _pc_darts(cfg: dict[str, Any]) -> SearchMethod:
    """Partial channels (K = 4), edge normalisation, and the official 15 warm-up epochs of weights only."""
    k = int(cfg.get("partial_k", 4))
    return SearchMethod(
        "pc_darts",
        supernet={"partial_k": k, "edge_norm": bool(cfg.get("edge_norm", True))},
        arch_warmup_epochs=int(cfg.get("arch_warmup_epochs", 15)),
    )


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
    ``second_order`` (bool), ``entropy_gamma`` (adds the entropy loss), ``arch_warmup_epochs`` (int)."""
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    name = cfg.get("name")
    if name not in METHODS:
        raise ConfigError(f"unknown DARTS method {name!r}; choose from {', '.join(sorted(METHODS))}")
    method = METHODS[name](cfg)
    if "second_order" in cfg:
        method.second_order = bool(cfg["second_order"])
    if "arch_warmup_epochs" in cfg:
        method.arch_warmup_epochs = int(cfg["arch_warmup_epochs"])
    get_rule(method.derive)  # an unknown rule fails here, before any training
    if cfg.get("entropy_gamma") and not any(r.name == "entropy" for r in method.regularizers):
        method.regularizers.append(EntropyLoss(float(cfg["entropy_gamma"]), cfg.get("entropy_reduction", "sum")))
    return method
