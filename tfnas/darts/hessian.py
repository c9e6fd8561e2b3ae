"""Dominant eigenvalue of the validation-loss Hessian w.r.t. alphas (RobustDARTS indicator).

Power iteration on Hessian-vector products from double backprop: no Hessian is
ever formed, so the cost is a few backward passes per iteration. A sharp rise
of the eigenvalue signals the collapse towards parameter-free ops; the
optional ``EigenStopRule`` stops a search when it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tfnas.darts.supernet import DartsSupernet


def _power(
    hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    v: list[torch.Tensor],
    shift: float,
    iters: int,
    tol: float,
) -> tuple[float, float]:
    """Power iteration on ``H + shift * I``; returns (Rayleigh quotient of H, last ||(H + shift) v||)."""
    eig, norm_f = 0.0, 0.0
    for _ in range(iters):
        hv = [h + shift * x for h, x in zip(hvp(v), v)]
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        norm_f = float(norm)
        if norm_f == 0.0:
            return 0.0, 0.0
        v[:] = [x.detach() / norm for x in hv]
        converged = abs(new - eig) <= tol * abs(new)
        eig = new
        if converged:
            break
    return eig - shift, norm_f


def dominant_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: list[torch.Tensor],
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """Largest-magnitude eigenvalue of d2 loss / d params2 (signed, via the Rayleigh quotient)."""
    hvp, v0 = _hvp_and_start(loss_fn, params, generator)
    return _power(hvp, _unit(v0), 0.0, iters, tol)[0]


def max_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: list[torch.Tensor],
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """Largest (most positive) eigenvalue: the RobustDARTS indicator.

    Plain power iteration finds the largest *magnitude*, which on an indefinite
    Hessian may be negative or may not converge when two eigenvalues of
    opposite sign have similar magnitude. A second pass on ``H + s I`` with
    ``s`` an upper estimate of the spectral radius makes every eigenvalue
    non-negative so the iteration goes to the top one; both passes give
    Rayleigh quotients (lower bounds of the maximum), and the larger is returned.
    """
    hvp, v0 = _hvp_and_start(loss_fn, params, generator)
    v = _unit([x.clone() for x in v0])
    dom, radius = _power(hvp, v, 0.0, iters, tol)
    shift = max(abs(dom), radius)
    top, _ = _power(hvp, _unit(v0), shift, iters, tol)
    return max(dom, top)


def _hvp_and_start(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], generator: torch.Generator | None
) -> tuple[Callable[[list[torch.Tensor]], list[torch.Tensor]], list[torch.Tensor]]:
    """The Hessian-vector product of the loss w.r.t. ``params`` (one graph, reused) and a random start."""
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True))

    v0 = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    return hvp, v0


def _unit(v: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    return [x / norm for x in v]


def supernet_val_eigenvalue(
    model: DartsSupernet, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, iters: int = 20, seed: int = 0
) -> float:
    """The RobustDARTS diagnostic on one validation batch: the largest eigenvalue w.r.t. the op alphas."""
    alphas = [model.arch.normal, model.arch.reduce]
    g = torch.Generator().manual_seed(seed)
    return max_eigenvalue(lambda: criterion(model(x), y), alphas, iters=iters, generator=g)


@dataclass
class EigenStopRule:
    """Stop when mean(last ``window`` values) / mean(the ``window`` before) exceeds ``ratio``."""

    window: int = 5
    ratio: float = 1.3
    history: list[float] = field(default_factory=list)

    def update(self, value: float) -> bool:
        self.history.append(float(value))
        if len(self.history) < 2 * self.window:
            return False
        recent = self.history[-self.window :]
        before = self.history[-2 * self.window : -self.window]
        base = sum(before) / self.window
        return base > 0 and (sum(recent) / self.window) / base > self.ratio
