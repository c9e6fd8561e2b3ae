"""Second-order architecture gradient and the Hessian eigenvalue, against exact autograd."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from tfnas.darts.architect import VirtualStep, unrolled_arch_grads
from tfnas.darts.hessian import EigenStopRule, dominant_eigenvalue, max_eigenvalue, supernet_val_eigenvalue
from tfnas.darts.methods import build_method
from tfnas.darts.shapes import SupernetSection
from tfnas.darts.space import load_cell_space
from tfnas.darts.supernet import DartsSupernet


def tiny(space: str = "s2", seed: int = 0) -> DartsSupernet:
    torch.manual_seed(seed)
    m = DartsSupernet(load_cell_space(space), SupernetSection(C=4, num_cells=3, alpha_init_std=0.5), num_classes=3)
    return m.double()


def batches(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    xt, xv = torch.randn(4, 3, 8, 8, generator=g).double(), torch.randn(4, 3, 8, 8, generator=g).double()
    yt, yv = torch.randint(0, 3, (4,), generator=g), torch.randint(0, 3, (4,), generator=g)
    return (xt, yt), (xv, yv)


def test_second_order_matches_exact_unrolled_gradient():
    model = tiny()
    model.eval()  # BN uses running stats: the loss is a pure function of (w, alpha)
    (xt, yt), (xv, yv) = batches()
    crit = nn.CrossEntropyLoss()
    xi, wd = 0.1, 3e-4
    names = [n for n, _ in model.named_weight_parameters()]
    w0 = {n: p.detach().clone() for n, p in model.named_weight_parameters()}
    a0 = {"arch.normal": model.arch.normal.detach().clone(), "arch.reduce": model.arch.reduce.detach().clone()}

    def unrolled_val_loss(an: torch.Tensor, ar: torch.Tensor) -> torch.Tensor:
        alphas = {"arch.normal": an, "arch.reduce": ar}
        ws = {n: w0[n].clone().requires_grad_(True) for n in names}
        lt = crit(functional_call(model, {**ws, **alphas}, (xt,)), yt)
        gs = torch.autograd.grad(lt, list(ws.values()), create_graph=True)
        w1 = {n: ws[n] - xi * (g + wd * ws[n]) for n, g in zip(names, gs)}
        return crit(functional_call(model, {**w1, **alphas}, (xv,)), yv)

    an = a0["arch.normal"].clone().requires_grad_(True)
    ar = a0["arch.reduce"].clone().requires_grad_(True)
    exact = torch.autograd.grad(unrolled_val_loss(an, ar), [an, ar])

    method = build_method("darts_2nd")
    virtual = VirtualStep(xi, 0.9, wd)
    # a small finite-difference step: exact up to rounding (the network is piecewise linear)
    ours, _ = unrolled_arch_grads(model, method, (xt, yt), (xv, yv), crit, virtual, fd_scale=1e-4)
    for e, o in zip(exact, ours):
        assert torch.allclose(e, o, rtol=1e-6, atol=1e-9), (e - o).abs().max()
    # the DARTS default step (0.01 / |g|) is a close approximation
    ours, _ = unrolled_arch_grads(model, method, (xt, yt), (xv, yv), crit, virtual)
    for e, o in zip(exact, ours):
        assert (e - o).norm() < 0.05 * e.norm()
    # the implicit term matters: first-order alone differs
    first = torch.autograd.grad(crit(model(xv), yv), [model.arch.normal, model.arch.reduce])
    assert not torch.allclose(first[0], exact[0], rtol=1e-2, atol=1e-5)
    # weights are restored exactly
    for n, p in model.named_weight_parameters():
        assert torch.equal(p, w0[n])


def test_power_iteration_matches_explicit_hessian():
    model = tiny("s2", seed=3)
    model.eval()
    _, (xv, yv) = batches(4)
    crit = nn.CrossEntropyLoss()
    shapes = [model.arch.normal.shape, model.arch.reduce.shape]
    n0 = model.arch.normal.numel()

    def f(flat: torch.Tensor) -> torch.Tensor:
        an, ar = flat[:n0].view(shapes[0]), flat[n0:].view(shapes[1])
        return crit(functional_call(model, {"arch.normal": an, "arch.reduce": ar}, (xv,)), yv)

    flat = torch.cat([model.arch.normal.detach().flatten(), model.arch.reduce.detach().flatten()])
    H = torch.autograd.functional.hessian(f, flat)
    eig = torch.linalg.eigvalsh((H + H.T) / 2)
    # this case is hard for plain power iteration: |lambda_min| ~ |lambda_max| with opposite signs
    assert eig[0] < 0 < eig[-1] and abs(eig[0] + eig[-1]) < 0.1 * eig[-1]
    ours = supernet_val_eigenvalue(model, xv, yv, crit, iters=60)
    assert abs(ours - eig[-1].item()) <= 1e-3 * abs(eig[-1].item())


def test_dominant_eigenvalue_on_quadratic():
    A = torch.diag(torch.tensor([1.0, -5.0, 2.0], dtype=torch.float64))
    x = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64, requires_grad=True)
    eig = dominant_eigenvalue(lambda: 0.5 * x @ A @ x, [x], iters=200, tol=1e-10)
    assert abs(eig + 5.0) < 1e-6
    assert abs(max_eigenvalue(lambda: 0.5 * x @ A @ x, [x], iters=200, tol=1e-12) - 2.0) < 1e-6


def test_eigen_stop_rule():
    rule = EigenStopRule(window=2, ratio=1.3)
    assert not any(rule.update(v) for v in [1.0, 1.0, 1.1, 1.2])
    assert rule.update(2.0)
