"""The TF-NAS search's parts, each on its own (no ``TFNASSearch``): the step plan and data order, the weight and
architecture steps, the derivation from the supernet's parameters, and the measured closed loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from profilers.drift import DriftCancelled, Round
from tests.test_search_tfnas import synthetic_table
from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.predict import predict
from tfnas.mbv2.search import steps
from tfnas.mbv2.search.build import SearchBatches, plan_steps
from tfnas.mbv2.search.config import DEFAULTS
from tfnas.mbv2.search.derive import chosen_widths, epoch_snapshot, final_choice, rescale_widths
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.measured import measured_loop, next_aim
from tfnas.mbv2.search.steps import draw_paths
from tfnas.mbv2.search.supernet import TFNASSupernet

OPS, DEPTHS = [2, 1, 0, 2], [1, 1]  # the choice the parameters below favour (tiny space: 4 layers, 3 ops)


@pytest.fixture
def lat(tiny_space) -> LatencyModel:
    return LatencyModel(tiny_space, synthetic_table(tiny_space))


def favouring(space, ops=OPS, depths=DEPTHS) -> TFNASSupernet:
    """A supernet whose op logits and sink betas favour ``ops`` and ``depths``, and whose favoured op of layer 0
    is 4 channels narrower than its default."""
    torch.manual_seed(0)
    model = TFNASSupernet(space)
    with torch.no_grad():
        for layer, o in enumerate(ops):
            model.alphas[layer, o] = 2.0
        for stage, d in enumerate(depths):
            model.betas[stage][d - model.min_depths[stage]] = 1.5
    model.normalize_alphas()
    model.layers[0].set_width(ops[0], model.layers[0]._w[ops[0]] - 4)
    return model


def _snapshot(model: TFNASSupernet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---- step plan and data order ------------------------------------------------------------------------------
def _split(n: int, offset: int = 0) -> TensorDataset:
    """``n`` samples whose input is their own number (from ``offset``)."""
    return TensorDataset(torch.arange(offset, offset + n).float().view(n, 1), torch.arange(n) % 3)


def test_step_plan_divides_the_batch_among_processes_and_refuses_what_cannot_run():
    search = DEFAULTS.search.model_copy(
        update={"batch_size": 8, "steps_per_epoch": None, "epochs": 3, "warmup_epochs": 1}
    )
    plan = plan_steps(search, _split(40), _split(20), world=2)
    assert (plan.batch, plan.steps_per_epoch, plan.held_batches, plan.total_steps) == (4, 5, 2, 15)
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        plan_steps(search, _split(40), _split(20), world=3)
    with pytest.raises(ConfigError, match="held-out split has 4 samples: less than one batch"):
        plan_steps(search, _split(40), _split(4), world=1)
    with pytest.raises(ConfigError, match="no arch steps"):  # one step per epoch, an arch step every 2nd
        plan_steps(search, _split(8), _split(20), world=1)


def test_each_rank_reads_its_own_shard_and_an_epochs_order_depends_only_on_seed_and_epoch():
    train, held_out = _split(32), _split(16, 1000)
    search = DEFAULTS.search.model_copy(update={"batch_size": 8, "steps_per_epoch": None})
    plan = plan_steps(search, train, held_out, world=2)

    def epoch_samples(rank: int, epoch: int, start: int = 0) -> list[int]:
        batches = SearchBatches(train, held_out, plan, seed=5, rank=rank, world=2)
        return [int(v) for x, _ in batches.train_loader(epoch, start) for v in x.flatten()]

    r0, r1 = epoch_samples(0, 1), epoch_samples(1, 1)
    assert len(r0) == len(r1) == 16 and not set(r0) & set(r1)  # disjoint shards of one permutation
    assert sorted(r0 + r1) == list(range(32))
    assert epoch_samples(0, 1) == r0 and epoch_samples(0, 2) != r0  # seeded by the epoch, nothing else
    assert epoch_samples(0, 1, start=2) == r0[2 * plan.batch :]  # a resumed epoch skips the steps it ran


# ---- the steps -----------------------------------------------------------------------------------------------
def test_step_generator_depends_only_on_seed_and_step_and_reseeds_dropout():
    draws = []
    for _ in range(2):
        gen = steps.step_generator(3, 17, salt=1)
        draws.append((torch.rand(4, generator=gen), torch.rand(4)))  # the step's own draws and torch's global ones
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    other = steps.step_generator(3, 18, salt=1)
    assert not torch.equal(torch.rand(4, generator=other), draws[0][0])


def test_weight_step_trains_the_weights_of_the_drawn_ops_only_and_leaves_the_architecture(tiny_space):
    model = favouring(tiny_space)
    weights = list(model.weight_parameters())
    opt = torch.optim.SGD(weights, lr=0.1)
    before = _snapshot(model)
    paths = ("gumbel", "random")
    drawn = draw_paths(paths, model.masked_logits().detach(), torch.Generator().manual_seed(11))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    row = steps.weight_step(model, opt, weights, x, y, paths, torch.Generator().manual_seed(11))
    assert row["train_loss"] > 0 and 0.0 <= row["train_acc"] <= 1.0
    after = _snapshot(model)
    assert torch.equal(after["alphas"], before["alphas"]) and all(
        torch.equal(after[n], before[n]) for n in before if n.startswith("betas")
    )
    for layer in range(len(OPS)):
        on_path = {int(p[layer]) for p in drawn}
        for o in range(3):
            prefix = f"layers.{layer}.ops.{o}."
            moved = any(not torch.equal(after[n], before[n]) for n in before if n.startswith(prefix))
            assert moved == (o in on_path), (layer, o)


def test_arch_step_moves_the_architecture_toward_the_latency_target_and_not_the_weights(tiny_space, lat):
    model = favouring(tiny_space)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    op_table = lat.op_table(model.widths())

    def expected_ms(m: TFNASSupernet) -> float:
        with torch.no_grad():
            return float(lat.expected(m.op_probs(), m.sink_probs(), op_table))

    expected = expected_ms(model)

    def step(target_ms: float) -> tuple[TFNASSupernet, dict[str, float]]:
        m = copy.deepcopy(model)
        w = list(m.weight_parameters())
        opt = torch.optim.SGD(m.arch_parameters(), lr=1.0)
        row = steps.arch_step(m, opt, w, x, y, torch.Generator().manual_seed(0), lat=lat, op_table=op_table,
                              temperature=1.0, target_ms=target_ms, latency_lambda=100.0)  # fmt: skip
        assert all(p.grad is None for p in w)  # frozen: no gradient reached the weights
        assert all(p.requires_grad for p in w)  # ... and unfrozen again after the step
        return m, row

    before = _snapshot(model)
    fast, row = step(expected * 0.5)  # far above the target: the latency term dominates
    after = _snapshot(fast)
    assert all(torch.equal(after[n], before[n]) for n in before if not n.startswith(("alphas", "betas")))
    assert not torch.equal(after["alphas"], before["alphas"])
    assert row["lat_loss"] == pytest.approx(100.0 * abs(row["expected_ms"] / (expected * 0.5) - 1.0), rel=1e-5)
    slow, _ = step(expected * 2.0)
    assert expected_ms(fast) < expected < expected_ms(slow)  # each moved toward its own target


# ---- name tables: each user-facing choice has one table, and the config's schema offers exactly its names --------
def test_the_configs_choices_are_the_registries_names():
    from typing import get_args

    from tfnas.mbv2.ops import ACT_LAYERS, make_act
    from tfnas.mbv2.search.config import AUTOCAST_DTYPES, TfnasRuntime, TfnasSearch
    from tfnas.mbv2.search.elastic import ELASTIC_RULES
    from tfnas.mbv2.space import Activation

    assert list(get_args(TfnasSearch.model_fields["elastic_rule"].annotation)) == ELASTIC_RULES.names()
    autocast = [a for arg in get_args(TfnasRuntime.model_fields["autocast"].annotation) for a in get_args(arg)]
    assert autocast == AUTOCAST_DTYPES.names()
    assert [steps.autocast_dtype(n) for n in [None, *autocast]] == [None, torch.bfloat16, torch.float16]
    assert list(get_args(Activation)) == ACT_LAYERS.names()
    assert isinstance(make_act("hswish"), torch.nn.Hardswish)
    with pytest.raises(ConfigError, match=r"unknown activation 'swsh' \(choose from relu, swish, hswish\).*'swish'"):
        make_act("swsh")


# ---- derivation ----------------------------------------------------------------------------------------------
def test_derivation_picks_the_op_width_and_depth_the_parameters_favour(tiny_space, lat):
    model = favouring(tiny_space)
    (ops, widths, depths), fields = epoch_snapshot(model, lat, lat.op_table(model.widths()))
    assert ops == OPS and depths == DEPTHS
    assert widths == chosen_widths(model, OPS) and widths[0] == model.widths()[0][OPS[0]]
    assert fields["ops"] == [model.op_names[o] for o in OPS] and fields["depths"] == DEPTHS
    assert fields["derived_ms"] == pytest.approx(lat.arch_ms(ops, widths, depths))
    assert fields["scaled_ms"] is None


def test_final_choice_reaches_the_target_by_widths_keeping_the_favoured_ops_and_depths(tiny_space, lat):
    model = favouring(tiny_space)
    (_, widths, _), _ = epoch_snapshot(model, lat, lat.op_table(model.widths()))
    target = lat.arch_ms(OPS, widths, DEPTHS) * 0.97
    (ops, new, depths), moves, _ = final_choice(model, lat, target, tolerance=0.003)
    assert ops == OPS and depths == DEPTHS and moves == []
    assert abs(lat.arch_ms(ops, new, depths) / target - 1.0) <= 0.003
    assert sum(new) < sum(widths)


@pytest.mark.parametrize("rule", ["tfnas", "grid"])
def test_epoch_end_rescaling_moves_the_supernets_widths_toward_the_target(tiny_space, lat, rule):
    model = favouring(tiny_space)
    choice, fields = epoch_snapshot(model, lat, lat.op_table(model.widths()))
    target = fields["derived_ms"] * 0.9
    changed, scaled = rescale_widths(model, lat, choice, target, rule, 0.1)
    assert changed > 0 and scaled < fields["derived_ms"]
    assert scaled == pytest.approx(lat.arch_ms(choice[0], chosen_widths(model, choice[0]), choice[2]))
    with pytest.raises(ConfigError, match="unknown elastic rule 'tfnsa'.*did you mean 'tfnas'"):
        rescale_widths(model, lat, choice, target, "tfnsa", 0.1)


# ---- the measured closed loop ----------------------------------------------------------------------------------
def _figure(ms: float, uncertainty: float | None = 0.0, clean: bool = True) -> DriftCancelled:
    return DriftCancelled(
        raw_ms=ms, ratio=1.0, reference_now_ms=1.0, reference_ms=None, reference_source="none", cancelled_ms=None,
        uncertainty_ms=uncertainty, clean=clean, steady_rounds=1 if clean else 0, rounds=[Round(1.0, ms, 1.0)],
    )  # fmt: skip


class _Runtime:
    """A fake runtime ``factor`` x slower than the table, its figures carrying ``uncertainty`` (ms)."""

    def __init__(self, table, factor: float, uncertainty: float = 0.0, clean: bool = True):
        self.table, self.factor, self.uncertainty, self.clean = table, factor, uncertainty, clean
        self.seen: list[Architecture] = []

    def __call__(self, arch: Architecture) -> DriftCancelled:
        self.seen.append(arch)
        return _figure(self.factor * predict(arch, self.table, calibrated=False), self.uncertainty, self.clean)


def _start(tiny_space, lat, target_frac: float = 0.5):
    model = favouring(tiny_space)
    fast, slow = lat.feasible_range()
    target = fast + target_frac * (slow - fast)
    choice, _, prior = final_choice(model, lat, target, 0.003)
    return choice, prior, target


def test_measured_loop_reaims_a_slow_runtime_onto_the_target_keeping_ops_and_depths(tiny_space, lat):
    choice, prior, target = _start(tiny_space, lat)
    runtime = _Runtime(lat.lookup.table, 1.15)
    (ops, widths, depths), loop = measured_loop(
        lat, choice, prior, target, runtime, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=1
    )
    rows, chosen = loop[:-1], loop[-1]
    assert abs(rows[0]["measured_ms"] / target - 1.0) > 0.1  # the table's choice missed by the runtime's 15%
    assert len(rows) >= 2 and abs(rows[-1]["measured_ms"] / target - 1.0) <= 0.02  # re-aimed, then stopped
    assert rows[-1]["predicted_ms"] == pytest.approx(target / 1.15, rel=0.02)
    assert chosen == {"chosen_iteration": len(rows) - 1, "measured_ms": rows[-1]["measured_ms"]}
    assert (ops, depths) == (choice[0], choice[2]) and widths != choice[1]
    assert all([[c.op for c in st] for st in a.stages] == [[c.op for c in st] for st in runtime.seen[0].stages]
               for a in runtime.seen)  # fmt: skip


class _SteepRuntime(_Runtime):
    """A runtime whose latency grows ``slope`` times faster than the table's around the target (7% under it at
    the table's choice): a single measured ratio then over-corrects, from one side of the target to the other."""

    def __init__(self, table, target: float, slope: float = 2.5):
        super().__init__(table, 1.0)
        self.target, self.slope = target, slope

    def __call__(self, arch: Architecture) -> DriftCancelled:
        self.seen.append(arch)
        ms = 0.93 * self.target + self.slope * (predict(arch, self.table, calibrated=False) - self.target)
        return _figure(ms)


def test_measured_loop_aims_between_networks_that_bracket_the_target(tiny_space, lat):
    """Measured CIFAR demo loops swung 1.36 -> 1.76 -> 1.28 -> 1.76 ms around a 1.5 ms budget: the runtime grew
    faster with width than the table. Once two measured networks bracket the target the next aim lies between
    them, and the loop ends within its tolerance instead of swinging further out."""
    choice, prior, target = _start(tiny_space, lat)
    runtime = _SteepRuntime(lat.lookup.table, target)
    _, loop = measured_loop(
        lat, choice, prior, target, runtime, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=1
    )
    rows, chosen = loop[:-1], loop[-1]
    assert rows[0]["measured_ms"] < target < rows[1]["measured_ms"]  # the ratio re-aim overshot once
    assert abs(chosen["measured_ms"] / target - 1.0) <= 0.02
    assert abs(rows[-1]["measured_ms"] / target - 1.0) < abs(rows[1]["measured_ms"] / target - 1.0)
    assert next_aim([(1.0, 0.9), (1.2, 1.3)], 1.1) == pytest.approx(1.1)  # the secant between the two
    assert next_aim([(1.0, 0.9)], 1.1) == pytest.approx(1.0 * 1.1 / 0.9)  # one side only: the measured ratio


def test_measured_loop_stops_when_the_target_lies_within_the_measurements_uncertainty(tiny_space, lat):
    choice, prior, target = _start(tiny_space, lat)
    miss = 0.05 * target  # 5% off, beyond the 2% tolerance ...
    runtime = _Runtime(lat.lookup.table, 1.05, uncertainty=1.2 * miss)  # ... but within the figure's own +/-
    got, loop = measured_loop(
        lat, choice, prior, target, runtime, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=1
    )
    assert len(runtime.seen) == 1 and got == choice
    assert loop[-1] == {"chosen_iteration": 0, "measured_ms": loop[0]["measured_ms"]}
    assert loop[0]["uncertainty_ms"] == pytest.approx(1.2 * miss) and "+/-" in loop[0]["figure"]


class _WobblyRuntime(_Runtime):
    """A runtime ``factor`` x the table whose successive measurements sit -3%, +3%, 0% off, each stating a tight
    +/- (its own rounds agree): measured, one measurement's figure moved 1.9-3.2% run to run while stating 0.8%."""

    def __call__(self, arch: Architecture) -> DriftCancelled:
        self.seen.append(arch)
        wobble = (-0.03, 0.03, 0.0)[(len(self.seen) - 1) % 3]
        return _figure(self.factor * predict(arch, self.table, calibrated=False) * (1 + wobble), 0.004)


def test_measured_loop_pools_measurements_and_is_not_stopped_by_one_lucky_figure(tiny_space, lat):
    choice, prior, target = _start(tiny_space, lat)
    truth = lambda arch: 1.05 * predict(arch, lat.lookup.table, calibrated=False)  # noqa: E731
    one = _WobblyRuntime(lat.lookup.table, 1.05)
    got, _ = measured_loop(lat, choice, prior, target, one, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=1)
    assert got == choice and truth(one.seen[0]) / target > 1.04  # stopped on a figure 3% low: the net is 5% over
    pooled = _WobblyRuntime(lat.lookup.table, 1.05)
    got, loop = measured_loop(
        lat, choice, prior, target, pooled, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=3
    )
    rows, chosen = loop[:-1], loop[-1]
    assert len(rows[0]["measurements_ms"]) == 3 and rows[0]["measured_ms"] / target == pytest.approx(1.05, rel=0.01)
    assert rows[0]["uncertainty_ms"] >= 0.03 * target  # the measurements' spread, not their own +/- 0.004
    assert got != choice and abs(truth(pooled.seen[-1]) / target - 1.0) <= 0.02
    assert chosen["chosen_iteration"] == len(rows) - 1 and "3 measurements" in rows[-1]["figure"]


def test_measured_loop_never_acts_on_an_unclean_measurement_and_stops_after_its_iterations(tiny_space, lat):
    choice, prior, target = _start(tiny_space, lat)
    unclean = _Runtime(lat.lookup.table, 1.3, clean=False)
    got, loop = measured_loop(
        lat, choice, prior, target, unclean, tolerance=0.02, iterations=4, final_tolerance=0.003, pool=1
    )
    assert got == choice and len(unclean.seen) == 2  # a second try while none is clean (pool 1: at most 2)
    assert loop[0]["measured_ms"] is None and loop[-1] == {"chosen_iteration": None, "measured_ms": None}
    once = _Runtime(lat.lookup.table, 1.3)
    got, loop = measured_loop(
        lat, choice, prior, target, once, tolerance=0.02, iterations=0, final_tolerance=0.003, pool=1
    )
    assert got == choice and len(once.seen) == 1 and loop[-1]["chosen_iteration"] == 0  # measured, never re-aimed
