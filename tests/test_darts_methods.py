"""Each DARTS-family method runs on tiny data and moves alphas the expected way."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tfnas.darts.architect import VirtualStep, arch_step
from tfnas.darts.methods import METHODS, beta_schedule, build_method
from tfnas.darts.search import build_search_model
from tfnas.train.common import build_optimizer


def data(seed: int = 0, n: int = 8, res: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, res, res, generator=g), torch.randint(0, 3, (n,), generator=g)


def make(method: str, space: str = "s0", init_std: float = 1e-3, **opts):
    torch.manual_seed(0)
    net = {"C": 8, "num_cells": 3, "alpha_init_std": init_std}
    cfg = {"space": space, "method": {"name": method, **opts}, "supernet": net}
    return build_search_model(cfg, 3, 3)


def run_arch_steps(model, method, steps: int, lr: float = 0.05, seed: int = 0):
    a_opt = build_optimizer(model.arch_parameters(), {"name": "adam", "lr": lr, "betas": [0.5, 0.999]})
    w_opt = build_optimizer(model.weight_parameters(), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    crit = nn.CrossEntropyLoss()
    for i in range(steps):
        tb, vb = data(seed + 2 * i), data(seed + 2 * i + 1)
        arch_step(model, method, a_opt, tb, vb, crit, VirtualStep(0.01), w_opt, progress=i / max(steps - 1, 1))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_a_few_bilevel_steps(name, tmp_path):
    from tfnas.darts.search import DartsSearch

    cfg = {
        "space": "s0",
        # warm-up tested on its own
        "method": {"name": name, "arch_warmup_epochs": 0, **({"pgd_steps": 2} if name == "sdarts_adv" else {})},
        "supernet": {"C": 8, "num_cells": 3},
        "data": {"resolution": 8, "num_samples": 32, "batch_size": 8},
        "search": {"epochs": 1, "max_steps_per_epoch": 2, "a_optimizer": {"name": "adam", "lr": 0.01}},
    }
    s = DartsSearch(cfg, tmp_path, show_progress=False)
    before = [a.detach().clone() for a in s.model.arch_parameters()]
    result = s.run()
    after = s.model.arch_parameters()
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    assert (tmp_path / "genotype.json").exists()
    expected_normals = 3 if name.startswith("multilevel") else 1
    assert len(result.genotype.normal) == expected_normals


@pytest.mark.parametrize("name", ["darts_1st", "darts_2nd"])
def test_arch_step_lowers_its_objective(name):
    """Constructed case: fixed batches, small SGD steps on alpha, BN frozen (a pure function):
    first order must lower L_val(w, alpha), second order the unrolled L_val(w - xi*grad, alpha)."""
    model, method = make(name)
    model.eval()
    crit = nn.CrossEntropyLoss()
    (xt, yt), (xv, yv) = data(1), data(2)
    xi = 0.05
    w_opt = build_optimizer(model.weight_parameters(), {"name": "sgd", "lr": xi})
    a_opt = build_optimizer(model.arch_parameters(), {"name": "sgd", "lr": 1.0})

    def objective() -> float:
        if not method.second_order:
            with torch.no_grad():
                return float(crit(model(xv), yv))
        saved = [p.detach().clone() for p in model.weight_parameters()]
        model.zero_grad()
        crit(model(xt), yt).backward()
        with torch.no_grad():
            for p in model.weight_parameters():
                if p.grad is not None:
                    p.sub_(xi * p.grad)
            value = float(crit(model(xv), yv))
            for p, s in zip(model.weight_parameters(), saved):
                p.copy_(s)
        return value

    before = objective()
    alphas0 = [a.detach().clone() for a in model.arch_parameters()]
    for _ in range(3):
        arch_step(model, method, a_opt, (xt, yt), (xv, yv), crit, VirtualStep(xi, 0.0, 0.0), w_opt)
    assert any(not torch.equal(a0, a) for a0, a in zip(alphas0, model.arch_parameters()))
    assert objective() < before


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_darts_minus_beta_decays_to_zero(kind):
    f = beta_schedule(kind)
    assert f(0.0) == 1.0 and f(1.0) == 0.0
    values = [f(i / 10) for i in range(11)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    if kind == "cosine":
        assert math.isclose(f(0.5), 0.5)


@pytest.mark.parametrize(
    "per, expected",
    [
        # the official code: beta moves once per epoch, start * (1 - epoch / epochs) (linear), never quite 0
        ("epoch", [1.0] * 3 + [2 / 3] * 3 + [1 / 3] * 3),
        ("step", [1 - i / 8 for i in range(9)]),  # the option: every step, exactly 0 at the last
    ],
)
def test_darts_minus_beta_decays_per_epoch_as_the_official_code(tmp_path, per, expected):
    from tfnas.darts.search import DartsSearch
    from tfnas.utils.metrics import read_metrics

    cfg = {
        "method": {"name": "darts_minus", "beta_schedule": "linear", "beta_per": per},
        "supernet": {"C": 8, "num_cells": 3},
        "data": {"resolution": 8, "num_samples": 64, "batch_size": 8},
        "search": {"epochs": 3, "max_steps_per_epoch": 3},
    }
    s = DartsSearch(cfg, tmp_path, show_progress=False)
    assert all(e.aux is not None for c in s.model.cells for e in c.edges)
    s.run()
    betas = [r["aux_beta"] for r in read_metrics(tmp_path)]
    assert betas == pytest.approx(expected)


def _entropy(model) -> float:
    w = model.arch_weights()
    return float(sum(-(x * x.clamp_min(1e-12).log()).sum() for x in (w["normal"], w["reduce"])).detach())


def test_entropy_loss_lowers_alpha_entropy():
    ent = {}
    for name in ("multilevel", "multilevel_entropy"):
        model, method = make(name, **({"gamma": 1.0} if name == "multilevel_entropy" else {}))
        assert model.arch.normal.shape[0] == 3 and model.arch.reduce.shape[0] == 2
        h0 = _entropy(model)
        run_arch_steps(model, method, 5)
        ent[name] = _entropy(model)
    assert ent["multilevel_entropy"] < ent["multilevel"] and ent["multilevel_entropy"] < h0


def test_multilevel_stages_get_independent_alphas():
    model, method = make("multilevel")
    run_arch_steps(model, method, 2)
    n = model.arch.normal.detach()
    assert not torch.allclose(n[0], n[1]) and not torch.allclose(n[1], n[2])
    assert [idx for kind, idx in model.alpha_index] == [0, 0, 1]  # cells: normal(low), reduce 1, reduce 2


def test_fair_darts_zero_one_pushes_sigmoids_apart():
    spread = {}

    def mean_spread(model) -> float:
        w = model.arch_weights()
        return float(torch.cat([(w[k] - 0.5).abs().flatten() for k in ("normal", "reduce")]).mean().detach())

    for zo in (0.0, 10.0):
        model, method = make("fair_darts", init_std=0.5, zero_one_weight=zo)
        assert torch.allclose(model.arch_weights()["normal"], torch.sigmoid(model.arch.normal))
        start = mean_spread(model)
        run_arch_steps(model, method, 8)
        spread[zo] = mean_spread(model)
    assert spread[10.0] > start + 0.01 and spread[10.0] > spread[0.0] + 0.01


def test_pc_darts_partial_channels_and_edge_norm():
    model, method = make("pc_darts", partial_k=4)
    edge = model.cells[0].edges[0]
    assert edge.partial_k == 4 and edge.ops[-1][1].in_channels == 2  # dil_conv on C/K = 2 channels
    w = model.arch_weights()
    assert w["edge_normal"].shape == (1, 14)
    assert torch.allclose(w["edge_normal"][0, :2].sum(), torch.tensor(1.0))
    beta0 = model.arch.beta_normal.detach().clone()
    run_arch_steps(model, method, 2)
    assert not torch.equal(beta0, model.arch.beta_normal.detach())
    x, _ = data()
    assert model(x).shape == (8, 3)


def test_unknown_method_is_a_config_error():
    from tfnas.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown DARTS method"):
        build_method("darts_9th")
