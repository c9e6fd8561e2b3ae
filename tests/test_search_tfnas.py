"""TF-NAS search: latency term, sampling, elastic widths, derivation, resume, CLI (tiny space, synthetic LUT)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from profilers.lut import LatencyTable
from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture, load_arch
from tfnas.mbv2.keys import space_signatures
from tfnas.mbv2.predict import predict
from tfnas.mbv2.search.build import check_target
from tfnas.mbv2.search.config import resolve_config
from tfnas.mbv2.search.elastic import (
    _reach,
    apply_widths,
    derive_choice,
    hit_target,
    keep_order,
    scale_widths,
)
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.search.steps import PATH_SAMPLERS, gumbel_softmax_weights, sample_paths
from tfnas.mbv2.search.supernet import TFNASSupernet

FINGERPRINT = {
    "cpu_model": "synthetic",
    "cpu_count": 1,
    "threads": 1,
    "runtime": "synthetic",
    "runtime_version": "0",
    "provider": "none",
    "batch": 1,
    "precision": "fp32",
    "platform": "test",
    "python": "3",
}


def synthetic_table(space, resolution=None, calibration=None) -> LatencyTable:
    """Latency grows with width, spatial size and kernel: enough structure for the search machinery."""
    res = resolution or space.resolution
    entries = {}
    for sig in space_signatures(space, res):
        if sig.width_range is None:
            widths, lat = [None], [0.05 + 1e-5 * sig.in_ch * sig.in_size**2]
        else:
            g, spec = sig.geometry, space.ops[sig.op]
            lo, hi = sig.width_range
            widths = list(range(lo, hi + 1))
            area = (g.in_size // g.stride) ** 2
            cost = (g.in_ch + g.out_ch + spec.kernel**2 + (8 if spec.se else 0)) * area * 2e-6
            lat = [0.01 + w * cost for w in widths]
        n = len(widths)
        entries[sig.key] = {
            "widths": widths,
            "latency_ms": lat,
            "spread_ms": [0.0] * n,
            "cv": [0.0] * n,
            "noisy": [False] * n,
            "repeats": [1] * n,
        }
    fp = {**FINGERPRINT, "resolution": res}
    return LatencyTable(space.name, fp, {}, entries, complete=True, calibration=calibration)


@pytest.fixture
def lat(tiny_space):
    return LatencyModel(tiny_space, synthetic_table(tiny_space))


# ---- latency term -------------------------------------------------------------------------------------------


def test_latency_gradient_reaches_op_logits_and_sink_betas(tiny_space, lat):
    model = TFNASSupernet(tiny_space)
    with torch.no_grad():
        model.alphas.normal_()
        for b in model.betas:
            b.normal_()
    gw = gumbel_softmax_weights(model.masked_logits(), 1.0, torch.Generator().manual_seed(0))
    ms = lat.expected(gw, model.sink_probs(), lat.op_table(model.widths()))
    (ms / 1.0 - 1.0).abs().backward()
    assert model.alphas.grad is not None and model.alphas.grad.abs().sum() > 0
    for b in model.betas:
        assert b.grad is not None and b.grad.abs().sum() > 0


def test_expected_latency_of_one_hot_choice_equals_discrete_latency(tiny_space, lat):
    model = TFNASSupernet(tiny_space)
    ops = [1, 0, 2, 1]
    onehot = torch.nn.functional.one_hot(torch.tensor(ops), 3).float()
    depths = [2, 1]
    sinks = []
    for s, b in enumerate(model.betas):
        p = torch.zeros_like(b)
        p[depths[s] - model.min_depths[s]] = 1.0
        sinks.append(p)
    widths = [row[o] for row, o in zip(model.widths(), ops)]
    got = float(lat.expected(onehot, sinks, lat.op_table(model.widths())))
    assert got == pytest.approx(lat.arch_ms(ops, widths, depths), rel=1e-6)


def test_calibration_is_applied(tiny_space):
    raw = LatencyModel(tiny_space, synthetic_table(tiny_space))
    cal = LatencyModel(tiny_space, synthetic_table(tiny_space, calibration={"scale": 1.5, "offset_ms": 0.2}))
    ops, widths, depths = [0, 0, 0, 0], [24, 24, 24, 48], [2, 2]
    assert cal.arch_ms(ops, widths, depths) == pytest.approx(1.5 * raw.arch_ms(ops, widths, depths) + 0.2)


def test_search_latency_agrees_with_predict_under_weight_streaming(tiny_space):
    """The search's latency (per-layer costs) is the same number ``tfnas predict`` gives the derived file."""
    table = synthetic_table(tiny_space, calibration={"scale": 1.5, "offset_ms": 0.2, "ms_per_mweight": 3.0})
    lat = LatencyModel(tiny_space, table)
    rng = random.Random(3)
    for _ in range(5):
        arch = Architecture.random(tiny_space, rng)
        ops = [lat.op_names.index(c.op) for st in arch.stages for c in st]
        widths = [c.width for st in arch.stages for c in st]
        assert lat.arch_ms(ops, widths, arch.depths) == pytest.approx(predict(arch, table), rel=1e-9)
        assert lat.arch_ms(ops, widths, arch.depths) > 1.5 * lat.arch_ms(ops, widths, arch.depths, False) + 0.2


# ---- sampling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PATH_SAMPLERS))
def test_samplers_respect_op_switches(tiny_space, name):
    model = TFNASSupernet(tiny_space, ops=["k3_e3", "k5_e3"])
    with torch.no_grad():
        model.alphas.normal_(std=3.0)
    gen = torch.Generator().manual_seed(0)
    disabled = model.op_names.index("k3_e6_se")
    for _ in range(200):
        picks = sample_paths(name, model.masked_logits(), gen)
        assert (picks != disabled).all()
    gw = gumbel_softmax_weights(model.masked_logits(), 5.0, gen)
    assert (gw[:, disabled] == 0).all() and torch.allclose(gw.sum(-1), torch.ones(len(gw)))
    model.normalize_alphas()
    assert torch.allclose(model.op_probs().sum(-1), torch.ones(len(gw)))
    assert (model.op_probs()[:, disabled] == 0).all()


def test_gumbel_sampler_follows_probabilities(tiny_space):
    model = TFNASSupernet(tiny_space)
    with torch.no_grad():
        model.alphas.copy_(torch.log(torch.tensor([0.7, 0.2, 0.1])).expand_as(model.alphas))
    gen = torch.Generator().manual_seed(1)
    picks = torch.stack([sample_paths("gumbel", model.masked_logits(), gen) for _ in range(2000)])
    freq = torch.bincount(picks.flatten(), minlength=3).float() / picks.numel()
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


@pytest.mark.parametrize("impl", ["loop", "fused"])
def test_mixed_forward_with_one_hot_weights_equals_single_path(tiny_space, impl):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space)
    model.set_mixed_impl(impl)
    apply_widths(model, [0, 1, 2, 1], [20, 40, 32, 100])  # elastic widths differ per op
    x = torch.randn(4, 3, 32, 32)
    choices = [1, 0, 2, 1]
    onehot = torch.nn.functional.one_hot(torch.tensor(choices), 3).float()
    a = model.forward_paths(x, choices)
    b = model.forward_mixed(x, onehot)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("impl", ["loop", "fused"])
def test_mixed_forward_is_a_weighted_sum_of_ops(tiny_space, impl):
    torch.manual_seed(0)
    model = TFNASSupernet(tiny_space)
    model.set_mixed_impl(impl)
    layer = model.layers[2]
    x = torch.randn(2, 8, 16, 16)
    w = torch.tensor([0.2, 0.5, 0.3])
    want = sum(w[i] * layer.ops[i](x, layer._w[i]) for i in range(3))
    assert torch.allclose(layer.forward_mixed(x, w, [0, 1, 2]), want, atol=1e-5)


# ---- elastic widths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [-1, 1])
def test_scale_widths_moves_latency_toward_target_within_bounds(tiny_space, lat, direction):
    ops, depths = [0, 1, 2, 1], [2, 2]
    widths = [tiny_space.default_width(lat.op_names[o], g.in_ch) for o, g in zip(ops, lat.geometry)]
    start = lat.arch_ms(ops, widths, depths)
    target = start * (1 + 0.1 * direction)
    new = scale_widths(lat, ops, widths, depths, target, step=0.1)
    end = lat.arch_ms(ops, new, depths)
    assert abs(end - target) < abs(start - target)
    assert (end - target) * direction <= 0  # does not cross
    for o, g, w in zip(ops, lat.geometry, new):
        lo, hi = tiny_space.width_bounds(lat.op_names[o], g.in_ch)
        assert lo <= w <= hi
    far = scale_widths(lat, ops, widths, depths, target * (100.0 if direction > 0 else 0.01), step=0.1)
    for o, g, w in zip(ops, lat.geometry, far):
        lo, hi = tiny_space.width_bounds(lat.op_names[o], g.in_ch)
        assert w == (hi if direction > 0 else lo)


def test_hit_target_is_within_tolerance(tiny_space, lat):
    ops, depths = [0, 1, 2, 1], [2, 1]
    widths = [tiny_space.default_width(lat.op_names[o], g.in_ch) for o, g in zip(ops, lat.geometry)]
    lo, hi = _reach(lat, ops, depths)
    for t in (0.3, 0.5, 0.8):
        target = lo + t * (hi - lo)
        new_ops, new, new_depths, moves = hit_target(lat, ops, widths, depths, target, tolerance=0.003)
        assert (new_ops, new_depths, moves) == (ops, depths, [])  # widths suffice: nothing else changes
        assert abs(lat.arch_ms(ops, new, depths) / target - 1) <= 0.003


def test_hit_target_changes_depth_or_op_only_when_widths_cannot_reach(tiny_space, lat):
    ops, depths = [0, 0, 0, 0], [0, 1]  # the shallowest net: widths alone cannot reach a slow target
    widths = [tiny_space.default_width(lat.op_names[o], g.in_ch) for o, g in zip(ops, lat.geometry)]
    fast, slow = lat.feasible_range()
    target = fast + 0.8 * (slow - fast)
    assert _reach(lat, ops, depths)[1] < target
    new_ops, new, new_depths, moves = hit_target(lat, ops, widths, depths, target, tolerance=0.003)
    assert moves and abs(lat.arch_ms(new_ops, new, new_depths) / target - 1) <= 0.003
    lat.to_arch(new_ops, new, new_depths)  # valid in the space


def test_apply_widths_keeps_channels_of_largest_dw_l1_norm(tiny_space):
    model = TFNASSupernet(tiny_space)
    layer, o = model.layers[0], 0
    op = layer.ops[o]
    w0 = layer._w[o]
    with torch.no_grad():
        norms = torch.randperm(op.bound).float() + 1.0
        op.dw.copy_(torch.sign(torch.randn_like(op.dw)) * (norms / op.kernel**2).view(-1, 1, 1, 1))
        op.expand.copy_(torch.arange(op.bound).float().view(-1, 1, 1, 1).expand_as(op.expand))
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    opt.state[op.expand]["momentum_buffer"] = op.expand.detach().clone()
    active = norms[:w0]
    keep = int(w0 * 0.75)
    want = torch.argsort(active, descending=True)[:keep]
    apply_widths(model, [o, 0, 0, 0], [keep] + [layer2._w[0] for layer2 in model.layers[1:]], opt)
    assert layer._w[o] == keep and int(layer.widths[o]) == keep
    assert torch.equal(op.expand[:keep, 0, 0, 0].long(), want)  # the kept channels, in importance order
    assert torch.allclose(op.importance(keep), active[want])
    assert torch.equal(opt.state[op.expand]["momentum_buffer"], op.expand.detach())
    # expanding again brings back the dropped active channels first? No: inactive ones by L1 norm, after the active
    perm = keep_order(op.importance(), keep)
    assert torch.equal(perm[:keep], torch.arange(keep))


def test_derived_depth_is_argmax_sink(tiny_space):
    model = TFNASSupernet(tiny_space)
    assert model.min_depths == [0, 1]  # stage 1 keeps the shape: its input is a sink point
    with torch.no_grad():
        model.betas[0].copy_(torch.tensor([0.1, 2.0, 0.3]))
        model.betas[1].copy_(torch.tensor([1.0, 0.5]))
    _, _, depths = derive_choice(model)
    assert depths == [1, 1]
    with torch.no_grad():
        model.betas[0].copy_(torch.tensor([3.0, 2.0, 0.3]))
        model.betas[1].copy_(torch.tensor([0.0, 0.5]))
    assert derive_choice(model)[2] == [0, 2]


# ---- search runs ---------------------------------------------------------------------------------------------


def tiny_config(tmp_path, tiny_space, **search):
    space_path = tmp_path / "tiny.yaml"
    import yaml

    from tests.conftest import TINY_SPACE

    space_path.write_text(yaml.safe_dump(TINY_SPACE))
    lut_path = tmp_path / "lut.json"
    synthetic_table(tiny_space).save(lut_path)
    s = {"epochs": 3, "warmup_epochs": 1, "batch_size": 8, "steps_per_epoch": 4, "arch_every": 2, **search}
    return resolve_config(
        {
            "name": "tiny",
            "space": str(space_path),
            "lut": str(lut_path),
            "target_ms": None,
            "seed": 3,
            "data": {"source": "generated", "resolution": 32, "num_samples": 96, "held_out_fraction": 0.5},
            "search": s,
            "runtime": {"progress": False},
        }
    ).to_dict()


def _target(cfg, tiny_space, frac):
    from tfnas.mbv2.search.build import build_latency_model

    fast, slow = build_latency_model(resolve_config(cfg), tiny_space).feasible_range()
    return fast + frac * (slow - fast)


def test_infeasible_target_fails_before_training_with_range(tmp_path, tiny_space, lat):
    fast, slow = lat.feasible_range()
    with pytest.raises(ConfigError, match=r"infeasible.*fastest.*takes [0-9.]+ ms.*slowest [0-9.]+ ms"):
        check_target(lat, fast * 0.5)
    cfg = tiny_config(tmp_path, tiny_space)
    cfg["target_ms"] = slow * 3
    cfg["data"]["source"] = str(tmp_path / "no-such-data")  # would fail later: the target check comes first
    with pytest.raises(ConfigError, match="infeasible"):
        TFNASSearch(cfg, tmp_path / "run")
    cfg["target_ms"] = None
    with pytest.raises(ConfigError, match="no latency target"):
        TFNASSearch(cfg, tmp_path / "run")


def test_tiny_search_end_to_end_writes_valid_arch_and_hits_target(tmp_path, tiny_space):
    cfg = tiny_config(tmp_path, tiny_space)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.4)
    result = TFNASSearch(cfg, tmp_path / "run").run()
    arch = load_arch(result.arch_path, tiny_space)
    assert abs(result.predicted_ms / cfg["target_ms"] - 1) <= 0.003
    assert arch.meta["target_ms"] == cfg["target_ms"]
    report = json.loads(result.report_path.read_text())
    assert report["target_hit"] and report["macs"] > 0 and report["params"] > 0
    assert len(report["history"]) == 3 and report["history"][1]["scaled_ms"] is not None
    for png in ("latency.png", "op_probs.png", "depths.png"):
        assert (tmp_path / "run" / png).stat().st_size > 0
    assert (tmp_path / "run" / "metrics.csv").exists()


def _final_state(run_dir):
    from tfnas.utils.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]


@pytest.mark.parametrize("op_weights", ["independent", "shared"])
def test_resume_gives_the_same_result_as_uninterrupted(tmp_path, tiny_space, op_weights):
    cfg = tiny_config(tmp_path, tiny_space, elastic_step=0.2, op_weights=op_weights)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.3)
    full = TFNASSearch(cfg, tmp_path / "full").run()

    from tfnas.mbv2.search.searcher import SearchInterrupted

    stopped = json.loads(json.dumps(cfg))
    for n in (3, 6):  # mid-epoch, then right after an epoch end (after width scaling)
        stopped["runtime"]["stop_after_steps"] = n
        with pytest.raises(SearchInterrupted):
            TFNASSearch(stopped, tmp_path / "resumed", resume=n != 3).run()
    stopped["runtime"]["stop_after_steps"] = None
    resumed = TFNASSearch(stopped, tmp_path / "resumed", resume=True).run()

    assert resumed.arch.to_dict() == full.arch.to_dict()
    a, b = _final_state(tmp_path / "full"), _final_state(tmp_path / "resumed")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra = json.loads((tmp_path / "full" / "report.json").read_text())
    rb = json.loads((tmp_path / "resumed" / "report.json").read_text())
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in ra["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in rb["history"]]


def test_resume_without_checkpoint_and_overwrite_are_errors(tmp_path, tiny_space):
    from tfnas.errors import TfnasError

    cfg = tiny_config(tmp_path, tiny_space, epochs=1, warmup_epochs=0)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
    with pytest.raises(TfnasError, match="no checkpoint"):
        TFNASSearch(cfg, tmp_path / "r", resume=True).run()
    TFNASSearch(cfg, tmp_path / "r").run()
    with pytest.raises(TfnasError, match="--resume"):
        TFNASSearch(cfg, tmp_path / "r").run()


def test_cli_search(tmp_path, tiny_space, capsys):
    import yaml

    from tfnas.cli import main

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1)
    target = _target(cfg, tiny_space, 0.6)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "out"}))
    rc = main(
        ["search", "--config", str(path), "--target-ms", str(target), "--out", str(tmp_path / "cli"), "--no-progress"]
    )
    assert rc == 0
    assert load_arch(tmp_path / "cli" / "arch.json", tiny_space).meta["target_ms"] == pytest.approx(target)
    rc = main(["search", "--config", str(path), "--target-ms", "1e6", "--out", str(tmp_path / "cli2")])
    assert rc == 2 and "infeasible" in capsys.readouterr().err


def _fake_runtime(monkeypatch, fake_measure, host=lambda: 1.0):
    """Replace the runtime under the drift-cancelled measurement: each candidate timing calls
    ``fake_measure(arch, backend, threads, batch, protocol)``, each reference timing gives 0.5 ms x ``host()``."""
    import types

    import tfnas.latency.measure as measure_mod

    def prepare(net, rt, workdir):
        return lambda protocol: fake_measure(net.arch, rt.backend, rt.threads, rt.batch, protocol)

    monkeypatch.setattr(measure_mod, "prepare_timer", prepare)
    monkeypatch.setattr(
        measure_mod, "reference_for", lambda rt, workdir: lambda p: types.SimpleNamespace(latency_ms=0.5 * host())
    )
    monkeypatch.setattr(measure_mod, "table_reference_ms", lambda table: 0.5)
    monkeypatch.setattr(measure_mod, "FRESH_PROCESS", False)  # the fakes live in this process


def test_measured_loop_reaims_until_the_measured_latency_hits(tmp_path, tiny_space, monkeypatch):
    """A runtime 12% slower than the table: the closed loop re-aims the prediction and lands on the target."""
    import types

    from tfnas.mbv2.predict import predict

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1, measure_final=True, measure_rounds=1)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.4)
    table = synthetic_table(tiny_space)
    calls = []

    def fake_measure(arch, backend="ort", threads=1, batch=1, protocol=None):
        calls.append(backend)
        return types.SimpleNamespace(latency_ms=1.12 * predict(arch, table, calibrated=False))

    _fake_runtime(monkeypatch, fake_measure)
    result = TFNASSearch(cfg, tmp_path / "run").run()
    report = json.loads(result.report_path.read_text())
    loop = report["measured_loop"]
    assert len(loop) >= 2 and abs(loop[-1]["measured_ms"] / cfg["target_ms"] - 1) <= 0.02
    assert result.predicted_ms == pytest.approx(cfg["target_ms"] / 1.12, rel=0.02)


def test_measured_loop_ignores_bursts_and_keeps_ops_and_depths(tmp_path, tiny_space, monkeypatch):
    """One timing in five hit by a 40% load burst must not throw the re-aim off; only widths move."""
    import itertools
    import types

    from tfnas.mbv2.predict import predict

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1, measure_final=True, measure_rounds=5)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.6)
    table = synthetic_table(tiny_space)
    noise = itertools.cycle([1.0, 1.4, 0.99, 1.01, 1.0])
    seen = []

    def fake_measure(arch, backend="ort", threads=1, batch=1, protocol=None):
        seen.append(
            ([[c.op for c in st] for st in arch.stages], arch.depths, [c.width for st in arch.stages for c in st])
        )
        return types.SimpleNamespace(latency_ms=0.9 * predict(arch, table, calibrated=False) * next(noise))

    _fake_runtime(monkeypatch, fake_measure)
    result = TFNASSearch(cfg, tmp_path / "run").run()
    loop = json.loads(result.report_path.read_text())["measured_loop"]
    assert abs(loop[-1]["measured_ms"] / cfg["target_ms"] - 1) <= 0.02
    assert len(loop) >= 3  # measured, re-aimed at least once, chosen
    assert all((ops, d) == seen[0][:2] for ops, d, _ in seen)  # the same network structure throughout
    assert seen[-1][2] != seen[0][2]  # ...at other widths


class _Host:
    """A fake host: every timing (candidate or reference) advances one step; ``spell`` steps run ``factor`` x slower."""

    def __init__(self, spell: range = range(0), factor: float = 1.35):
        self.step, self.spell, self.factor = 0, spell, factor

    def __call__(self) -> float:
        self.step += 1
        return self.factor if self.step - 1 in self.spell else 1.0


def test_measured_loop_is_not_misled_by_a_slow_spell(tmp_path, tiny_space):
    """A +35% spell covering the whole first figure (its 3 pooled measurements, reference and network alike): the raw figure says
    +35%, the drift-cancelled one the quiet value, so the loop does not re-aim a net that already hits."""
    import types

    from tfnas.mbv2.predict import predict

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1, measure_final=True, measure_rounds=5)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.6)
    table = synthetic_table(tiny_space)
    host = _Host(spell=range(0, 33))  # 3 measurements of 5 rounds: R C R C ... R = 11 timings each

    def fake_measure(arch, backend="ort", threads=1, batch=1, protocol=None):
        return types.SimpleNamespace(latency_ms=predict(arch, table, calibrated=False) * host())

    with pytest.MonkeyPatch.context() as mp:
        _fake_runtime(mp, fake_measure, host)
        result = TFNASSearch(cfg, tmp_path / "run").run()
    loop = [r for r in json.loads(result.report_path.read_text())["measured_loop"] if "iteration" in r]
    assert loop[0]["raw_ms"] == pytest.approx(1.35 * loop[0]["predicted_ms"], rel=1e-6)  # what was believed before
    assert loop[0]["measured_ms"] == pytest.approx(loop[0]["predicted_ms"], rel=1e-6)
    assert len(loop) == 1 and abs(result.predicted_ms / cfg["target_ms"] - 1) <= 0.02


def test_measured_loop_stops_within_the_measurements_uncertainty(tmp_path, tiny_space, monkeypatch):
    """With a tolerance tighter than the host's noise, the loop stops once the target lies within the
    measurement's own 95% uncertainty (reported in the row) instead of chasing noise."""
    import itertools
    import types

    from tfnas.mbv2.predict import predict

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1, measure_final=True, measure_rounds=5)
    cfg["search"]["measure_tolerance"] = 0.001
    cfg["target_ms"] = _target(cfg, tiny_space, 0.6)
    table = synthetic_table(tiny_space)
    noise = itertools.cycle([1.0, 1.04, 0.96, 1.02, 0.98])

    def fake_measure(arch, backend="ort", threads=1, batch=1, protocol=None):
        return types.SimpleNamespace(latency_ms=predict(arch, table, calibrated=False) * next(noise))

    _fake_runtime(monkeypatch, fake_measure)
    result = TFNASSearch(cfg, tmp_path / "run").run()
    loop = [r for r in json.loads(result.report_path.read_text())["measured_loop"] if "iteration" in r]
    last = loop[-1]
    assert last["uncertainty_ms"] > 0.001 * cfg["target_ms"]  # the noise is wider than the tolerance...
    assert abs(last["measured_ms"] - cfg["target_ms"]) <= last["uncertainty_ms"]  # ...and the loop stopped inside it
    assert len(loop) < cfg["search"]["measure_iterations"] + 1
    assert "+/-" in last["figure"]


def _activation_dtypes(search) -> dict[str, set]:
    """Record the dtype of every candidate op's output, per kind of step (weight / arch)."""
    from tfnas.mbv2.search.layers import ElasticInvertedResidual

    seen: dict[str, set] = {"weight": set(), "arch": set()}
    step = ["weight"]
    real_arch_step = search.arch_step

    def arch_step(*args, **kwargs):
        step[0] = "arch"
        try:
            return real_arch_step(*args, **kwargs)
        finally:
            step[0] = "weight"

    search.arch_step = arch_step
    for m in search.model.modules():
        if isinstance(m, ElasticInvertedResidual):
            m.register_forward_hook(lambda mod, inputs, out: seen[step[0]].add(out.dtype))
    return seen


@pytest.mark.parametrize(("autocast", "dtype"), [("bf16", torch.bfloat16), (None, torch.float32)])
def test_autocast_runs_the_steps_forwards_in_its_dtype(tmp_path, tiny_space, autocast, dtype):
    """``runtime.autocast: bf16``: the ops of both steps compute in bfloat16 (fp32 without it); the losses stay
    finite and the derived net is on the target."""
    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1)
    cfg["runtime"]["autocast"] = autocast
    cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
    search = TFNASSearch(cfg, tmp_path / "run")
    seen = _activation_dtypes(search)
    result = search.run()
    assert seen == {"weight": {dtype}, "arch": {dtype}}
    assert abs(result.predicted_ms / cfg["target_ms"] - 1) <= cfg["search"]["final_tolerance"]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["held_loss"]) for r in search.history[1:])


def test_autocast_setting_is_checked():
    with pytest.raises(ConfigError, match=r"runtime.autocast' = 'int8'.*bf16"):
        resolve_config({"runtime": {"autocast": "int8"}})


@pytest.mark.parametrize(("interval", "saves"), [(0.0, 3), (1e9, 1)])
def test_epoch_checkpoints_are_throttled_but_the_last_epoch_always_saves(
    tmp_path, tiny_space, monkeypatch, interval, saves
):
    """A supernet checkpoint is large (357 MB for ImageNet): epoch-end saves younger than the interval are skipped."""
    from tfnas.mbv2.search.searcher import TFNASSearch
    from tfnas.train.common import RunLoop

    cfg = tiny_config(tmp_path, tiny_space, epochs=3, warmup_epochs=1)
    cfg["runtime"]["checkpoint_min_interval_s"] = interval
    cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
    calls = []
    real = RunLoop.save
    monkeypatch.setattr(RunLoop, "save", lambda self, *a, **k: (calls.append(a[0]), real(self, *a, **k)))
    TFNASSearch(cfg, tmp_path / "run").run()
    assert len(calls) == saves and calls[-1] == 3


def test_resumed_auto_table_run_keeps_the_table_it_started_with(tmp_path, tiny_space, monkeypatch):
    """lut: auto may choose another file once the host drifted; a resume must not (issue 24, item 4)."""
    from types import SimpleNamespace

    import tfnas.mbv2.search.run as run_mod
    from tfnas.mbv2.search.searcher import SearchInterrupted

    cfg = tiny_config(tmp_path, tiny_space)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.4)
    first = cfg["lut"]
    other = tmp_path / "other_lut.json"
    other.write_bytes(Path(first).read_bytes())
    picks = iter([first, str(other)])
    monkeypatch.setattr(run_mod, "choose_table", lambda *a, **k: SimpleNamespace(path=next(picks), note="test"))
    auto = dict(cfg, lut="auto", out=str(tmp_path / "run"))
    auto["runtime"] = dict(cfg["runtime"], stop_after_steps=3)
    started = run_mod.provide_table(resolve_config(auto), say=lambda s: None)
    with pytest.raises(SearchInterrupted):
        run_mod.run_search(started, say=lambda s: None, measure=False)
    auto["runtime"] = dict(cfg["runtime"], stop_after_steps=None)
    resumed = run_mod.provide_table(resolve_config(auto), resume=True, say=lambda s: None)
    outcome = run_mod.run_search(resumed, resume=True, say=lambda s: None, measure=False)
    assert outcome.config.lut == first and next(picks) == str(other)  # the second choice was never asked for
