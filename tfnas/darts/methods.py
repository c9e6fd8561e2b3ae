"""DARTS-family search methods: one options schema per method, registered by name, that builds the method.

A method's options (``method: {name: pc_darts, partial_k: 4}`` in a config) are a schema
class holding the published defaults; ``build()`` turns them into a ``SearchMethod``, the
bundle of choices the shared bilevel trainer consults:

* ``supernet``: structural supernet options (partial channels, edge
  normalisation, auxiliary skip, multi-level alphas);
* ``normalize``: how alphas become op weights (softmax; Fair DARTS: sigmoid);
* ``second_order``: unrolled architecture gradient;
* ``regularizers``: extra terms on the architecture (validation) loss:
  entropy, zero-one, latency, composable with any method;
* ``perturb``: SDARTS perturbation of the op weights during the weight step;
* ``aux_beta``: DARTS- auxiliary-skip weight as a function of search progress (per epoch or step);
* ``derive`` / ``derive_options``: the genotype derivation rule (``derive.DERIVE_RULES``);
* ``arch_warmup_epochs``: first epochs train the weights only (PC-DARTS: 15).

Every default is the published method's (its paper and official code);
where an option keeps another behaviour, its docstring says so.

Adding a method means registering one options class; the trainer has no per-method branches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from pydantic import Field
from torch import nn

from tfnas.config.loader import Schema, validate
from tfnas.darts.derive import get_rule
from tfnas.darts.supernet import ArchWeights, DartsSupernet, SupernetStructure
from tfnas.registry import Registry

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


NORMALIZERS: Registry[Normalizer] = Registry("arch-weight normalizer")  # alpha -> op weights
NORMALIZERS.add("softmax", softmax)
NORMALIZERS.add("sigmoid", torch.sigmoid)  # Fair DARTS: ops do not compete


@dataclass
class SearchMethod:
    name: str
    normalize_name: str = "softmax"
    second_order: bool = False
    supernet: SupernetStructure = field(default_factory=lambda: SupernetStructure())
    regularizers: list[ArchRegularizer] = field(default_factory=list)
    perturb: Perturbation | None = None
    aux_beta: Callable[[float], float] | None = None
    aux_beta_per: str = "epoch"  # its progress: epoch / epochs, or step / (steps - 1)
    derive: str = "top2"
    derive_options: dict[str, float] = field(default_factory=dict)
    arch_warmup_epochs: int = 0

    @property
    def normalize(self) -> Normalizer:
        return NORMALIZERS[self.normalize_name]


# ---------------------------------------------------------------- regularizers
def _op_weights(weights: ArchWeights) -> list[torch.Tensor]:
    return [weights["normal"], weights["reduce"]]


ENTROPY_REDUCTIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("entropy reduction")
ENTROPY_REDUCTIONS.add("sum", torch.sum)
ENTROPY_REDUCTIONS.add("mean", torch.mean)


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
        ENTROPY_REDUCTIONS.get(self.reduction)  # an unknown one: the registry's error, at construction

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

    def __call__(self, model, weights, x, y, criterion, progress):
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

    def __call__(self, model, weights, x, y, criterion, progress):
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
# progress in [0, 1] -> the fraction of the starting weight left: 1 at the start, exactly 0 at the end
BETA_SCHEDULES: Registry[Callable[[float], float]] = Registry("DARTS- beta schedule")
BETA_SCHEDULES.add("linear", lambda p: 1.0 - p)
BETA_SCHEDULES.add("cosine", lambda p: 0.5 * (1.0 + math.cos(math.pi * p)))


def beta_schedule(kind: str, start: float = 1.0) -> Callable[[float], float]:
    """Auxiliary-skip weight over progress in [0, 1]: from ``start`` to exactly 0 at the end."""
    shape = BETA_SCHEDULES[kind]
    return lambda p: start * shape(min(max(p, 0.0), 1.0))


# ---------------------------------------------------------------- options and registry
class MethodOptions(Schema):
    """Options every method takes (a method's schema adds its own; each default is the published one)."""

    name: str
    second_order: bool = False
    entropy_gamma: float = Field(0.0, ge=0)  # adds gamma * entropy of the op weights (0: off)
    entropy_reduction: Literal["mean", "sum"] = "sum"  # over edges; the paper sums
    arch_warmup_epochs: int = Field(0, ge=0)  # first epochs train weights only (PC-DARTS: 15)

    def structure(self) -> SupernetStructure:
        return SupernetStructure()

    def method(self) -> SearchMethod:
        """The method's own choices; ``build`` adds the options every method takes."""
        return SearchMethod(self.name)

    def build(self) -> SearchMethod:
        m = self.method()
        m.name, m.second_order, m.arch_warmup_epochs = self.name, self.second_order, self.arch_warmup_epochs
        m.supernet = self.structure()
        get_rule(m.derive)  # an unknown rule fails here, before any training
        if self.entropy_gamma and not any(r.name == "entropy" for r in m.regularizers):
            m.regularizers.append(EntropyLoss(self.entropy_gamma, self.entropy_reduction))
        return m


METHODS: Registry[type[MethodOptions]] = Registry("DARTS method")


def register_method(cls: type[MethodOptions]) -> type[MethodOptions]:
    """Register an options class under its ``name`` default."""
    METHODS.add(cls.model_fields["name"].default, cls)
    return cls


@register_method
class DartsFirstOrder(MethodOptions):
    name: Literal["darts_1st"] = "darts_1st"


@register_method
class DartsSecondOrder(MethodOptions):
    name: Literal["darts_2nd"] = "darts_2nd"
    second_order: bool = True


@register_method
class DartsMinus(MethodOptions):
    """DARTS-: an auxiliary skip on every edge, its weight decaying from ``beta_start`` towards 0.

    As the official code: the weight moves once per epoch, ``beta_start * (1 - epoch / epochs)`` (linear),
    so the last epoch still has ``beta_start / epochs``; ``beta_per: step`` (an option) decays it every step
    to exactly 0 at the end.
    """

    name: Literal["darts_minus"] = "darts_minus"
    beta_schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = Field(1.0, ge=0)
    beta_per: Literal["epoch", "step"] = "epoch"

    def structure(self) -> SupernetStructure:
        return SupernetStructure(aux_skip=True)

    def method(self) -> SearchMethod:
        sched = beta_schedule(self.beta_schedule, self.beta_start)
        return SearchMethod(self.name, aux_beta=sched, aux_beta_per=self.beta_per)


@register_method
class Multilevel(MethodOptions):
    name: Literal["multilevel"] = "multilevel"

    def structure(self) -> SupernetStructure:
        return SupernetStructure(multi_level=True)


@register_method
class MultilevelEntropy(MethodOptions):
    """Independent alphas per stage, plus ``gamma`` x the entropy of the op weights (the paper: gamma 1, summed)."""

    name: Literal["multilevel_entropy"] = "multilevel_entropy"
    gamma: float = Field(1.0, ge=0)

    def structure(self) -> SupernetStructure:
        return SupernetStructure(multi_level=True)

    def method(self) -> SearchMethod:
        return SearchMethod(self.name, regularizers=[EntropyLoss(self.gamma, self.entropy_reduction)])


@register_method
class FairDarts(MethodOptions):
    """Sigmoid weights, zero-one loss, and Fair DARTS's own derivation: an edge stays when its best op
    weight is >= ``threshold`` (0.85). ``derive: top2`` keeps the DARTS rule instead (an option)."""

    name: Literal["fair_darts"] = "fair_darts"
    zero_one_weight: float = Field(10.0, ge=0)
    derive: Literal["threshold", "top2"] = "threshold"
    threshold: float = Field(0.85, gt=0, lt=1)

    def method(self) -> SearchMethod:
        options = {"threshold": self.threshold} if self.derive == "threshold" else {}
        return SearchMethod(self.name, normalize_name="sigmoid", regularizers=[ZeroOneLoss(self.zero_one_weight)],
                            derive=self.derive, derive_options=options)  # fmt: skip


@register_method
class PcDarts(MethodOptions):
    """Partial channels (K = 4), edge normalisation, and the official 15 warm-up epochs of weights only."""

    name: Literal["pc_darts"] = "pc_darts"
    partial_k: int = Field(4, ge=1)
    edge_norm: bool = True
    arch_warmup_epochs: int = Field(15, ge=0)

    def structure(self) -> SupernetStructure:
        return SupernetStructure(partial_k=self.partial_k, edge_norm=self.edge_norm)


@register_method
class SdartsRs(MethodOptions):
    name: Literal["sdarts_rs"] = "sdarts_rs"
    eps_min: float = Field(0.03, ge=0)
    eps_max: float = Field(0.3, ge=0)

    def method(self) -> SearchMethod:
        return SearchMethod(self.name, perturb=RandomSmoothing(self.eps_min, self.eps_max))


@register_method
class SdartsAdv(MethodOptions):
    name: Literal["sdarts_adv"] = "sdarts_adv"
    eps_min: float = Field(0.03, ge=0)
    eps_max: float = Field(0.3, ge=0)
    pgd_steps: int = Field(7, ge=1)

    def method(self) -> SearchMethod:
        return SearchMethod(self.name, perturb=AdversarialPerturbation(self.eps_min, self.eps_max, self.pgd_steps))


def build_method(options: MethodOptions | dict[str, Any] | str) -> SearchMethod:
    """A method from its options (or a name / raw ``{"name": ..., **options}``, validated first)."""
    if not isinstance(options, MethodOptions):
        raw = {"name": options} if isinstance(options, str) else options
        name = raw.get("name") if isinstance(raw, dict) else None
        options = validate(METHODS[name], raw, "<DARTS method>", ("method",))
    return options.build()
