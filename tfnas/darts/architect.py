"""Architecture steps: first order, and second order (unrolled, DARTS eq. 7-8).

Second order approximates ``d/dalpha L_val(w - xi * dL_train/dw, alpha)`` by

    dL_val/dalpha(w', alpha) - xi * [dL_train/dalpha(w+, alpha) - dL_train/dalpha(w-, alpha)] / (2 eps)

with ``w' = w - xi * (momentum + dL_train/dw + wd * w)`` the virtual weight step,
``w+- = w +- eps * dL_val/dw'`` and ``eps = 0.01 / ||dL_val/dw'||`` (a central
finite-difference Hessian-vector product). Weights are swapped in place and
restored instead of copying the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tfnas.darts.methods import SearchMethod
from tfnas.darts.supernet import DartsSupernet


def arch_objective(
    model: DartsSupernet,
    method: SearchMethod,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: nn.Module,
    progress: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Validation loss plus the method's regularizers; returns (loss, scalar parts for logging)."""
    weights = model.arch_weights()
    ce = criterion(model(x, weights), y)
    loss, parts = ce, {"val_ce": float(ce.detach())}
    for reg in method.regularizers:
        term = reg(model, weights, progress)
        parts[f"reg_{reg.name}"] = float(term.detach())
        expected = getattr(reg, "expected", None)  # latency term: also log the expected latency itself
        if callable(expected):
            parts["expected_latency_ms"] = float(expected(weights).detach())
        loss = loss + term
    return loss, parts


@dataclass
class VirtualStep:
    """What the unrolled step needs from the weight optimiser (SGD with momentum)."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 3e-4


def _set_(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)


def unrolled_arch_grads(
    model: DartsSupernet,
    method: SearchMethod,
    train_batch: tuple[torch.Tensor, torch.Tensor],
    val_batch: tuple[torch.Tensor, torch.Tensor],
    criterion: nn.Module,
    virtual: VirtualStep,
    w_optimizer: torch.optim.Optimizer | None = None,
    progress: float = 0.0,
    fd_scale: float = 0.01,
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Second-order gradient of the architecture objective; weights are left unchanged."""
    weights = list(model.weight_parameters())
    alphas = model.arch_parameters()
    xt, yt = train_batch
    original = [w.detach().clone() for w in weights]

    # virtual step w' = w - xi * (v + g + wd * w)
    loss_t = criterion(model(xt), yt)
    g_w = torch.autograd.grad(loss_t, weights, allow_unused=True)
    with torch.no_grad():
        for w, g in zip(weights, g_w):
            d = w.mul(virtual.weight_decay)
            if g is not None:
                d = d + g
            state = w_optimizer.state.get(w, {}) if w_optimizer is not None else {}
            buf = state.get("momentum_buffer")
            if buf is not None:
                d = d + virtual.momentum * buf
            w.sub_(virtual.lr * d)

    try:
        loss_v, parts = arch_objective(model, method, *val_batch, criterion, progress)
        grads = torch.autograd.grad(loss_v, alphas + weights, allow_unused=True)
        d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads[: len(alphas)])]
        d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas) :])]
        norm = torch.sqrt(sum((g * g).sum() for g in d_w))
        eps = fd_scale / (float(norm) + 1e-12)

        def train_alpha_grad(sign: float) -> list[torch.Tensor]:
            _set_(weights, [o + sign * eps * g for o, g in zip(original, d_w)])
            gs = torch.autograd.grad(criterion(model(xt), yt), alphas, allow_unused=True)
            return [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, gs)]

        g_pos = train_alpha_grad(+1.0)
        g_neg = train_alpha_grad(-1.0)
    finally:
        _set_(weights, original)
    out = [da - virtual.lr * (gp - gn) / (2 * eps) for da, gp, gn in zip(d_alpha, g_pos, g_neg)]
    return out, parts


def arch_step(
    model: DartsSupernet,
    method: SearchMethod,
    a_optimizer: torch.optim.Optimizer,
    train_batch: tuple[torch.Tensor, torch.Tensor],
    val_batch: tuple[torch.Tensor, torch.Tensor],
    criterion: nn.Module,
    virtual: VirtualStep,
    w_optimizer: torch.optim.Optimizer | None = None,
    progress: float = 0.0,
) -> dict[str, float]:
    """One update of the architecture parameters (first or second order per the method)."""
    a_optimizer.zero_grad(set_to_none=True)
    alphas = model.arch_parameters()
    if method.second_order:
        grads, parts = unrolled_arch_grads(
            model, method, train_batch, val_batch, criterion, virtual, w_optimizer, progress
        )
        for a, g in zip(alphas, grads):
            a.grad = g
    else:
        loss, parts = arch_objective(model, method, *val_batch, criterion, progress)
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        for a, g in zip(alphas, grads):
            a.grad = torch.zeros_like(a) if g is None else g
    a_optimizer.step()
    return parts
