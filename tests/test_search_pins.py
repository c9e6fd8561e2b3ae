"""Pins of the search defaults no test held yet (issue 22, item 5): the temperature decay, the latency loss, the
warm-up, the elastic rule and the augmentation of the weights' split only.

Every search here is built from a raw config that states none of the pinned keys, so it runs on the schema's
defaults (``tiny_config`` returns a fully resolved dict, which would carry the defaults of its own call along);
each test checks the default itself and the behaviour it gives, so it fails when the default changes.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.conftest import TINY_SPACE
from tests.test_data import _fake_cifar_arrays, _write_bin
from tests.test_search_tfnas import synthetic_table
from tfnas.mbv2.search import derive as derive_module
from tfnas.mbv2.search.build import build_latency_model
from tfnas.mbv2.search.config import DEFAULTS, resolve_config
from tfnas.mbv2.search.elastic import ELASTIC_RULES, ElasticRule
from tfnas.mbv2.search.searcher import TFNASSearch


def _raw_config(tmp_path, tiny_space, search=None, data=None, unstated=()) -> dict:
    """A tiny search config stating only what it needs: the ``unstated`` keys come from the schema's defaults."""
    space_path, lut_path = tmp_path / "tiny.yaml", tmp_path / "lut.json"
    space_path.write_text(yaml.safe_dump(TINY_SPACE))
    synthetic_table(tiny_space).save(lut_path)
    cfg = {
        "name": "pins",
        "space": str(space_path),
        "lut": str(lut_path),
        "seed": 3,
        "data": {"source": "generated", "resolution": 32, "num_samples": 48, "held_out_fraction": 0.5, **(data or {})},
        "search": {"batch_size": 8, "steps_per_epoch": 2, "arch_every": 2, **(search or {})},
        "runtime": {"progress": False, "checkpoint_min_interval_s": 1.0e9},
    }
    assert not set(unstated) & (set(cfg["search"]) | set(cfg["data"]))  # the defaults under test are not stated
    fast, slow = build_latency_model(resolve_config(cfg), tiny_space).feasible_range()
    cfg["target_ms"] = (fast + slow) / 2
    return cfg


# ---- the Gumbel temperature: 5.0, x 0.96 per architecture epoch ----------------------------------------------
def test_temperature_decays_by_0_96_per_epoch_after_the_warm_up_by_default(tmp_path, tiny_space):
    assert DEFAULTS.search.temperature == 5.0 and DEFAULTS.search.temperature_decay == 0.96
    cfg = _raw_config(
        tmp_path, tiny_space, {"epochs": 6, "warmup_epochs": 2}, unstated=("temperature", "temperature_decay")
    )
    search = TFNASSearch(cfg, tmp_path / "run")
    assert search.cfg.search.temperature_decay == 0.96  # the config came without it
    want = [5.0, 5.0, 5.0, 5.0 * 0.96, 5.0 * 0.96**2, 5.0 * 0.96**3]  # flat through warm-up and the first arch epoch
    assert [search.temperature(e) for e in range(6)] == pytest.approx(want, rel=1e-12)
    assert search.temperature(2 + 40) == pytest.approx(5.0 * 0.96**40, rel=1e-12)
    # ... and the value is read from the config, not built in
    other = _raw_config(tmp_path, tiny_space, {"epochs": 6, "warmup_epochs": 2})
    other["search"].update(temperature=2.0, temperature_decay=0.5)
    assert TFNASSearch(other, tmp_path / "run2").temperature(5) == pytest.approx(2.0 * 0.5**3)


# ---- the latency loss: lambda * |LAT / T - 1|, lambda 0.1 --------------------------------------------------------
def test_latency_loss_is_a_tenth_of_the_absolute_relative_miss_on_both_sides(tmp_path, tiny_space):
    assert DEFAULTS.search.latency_lambda == 0.1
    cfg = _raw_config(tmp_path, tiny_space, {"epochs": 2, "warmup_epochs": 1}, unstated=("latency_lambda",))
    search = TFNASSearch(cfg, tmp_path / "run")
    assert search.cfg.search.latency_lambda == 0.1
    x, y = search._held_batch(0)
    expected = search.arch_step(x, y, 0, 1)["expected_ms"]
    # above the target (LAT/T ~ 1.67) and below it (~ 0.67): one-sided, squared or another lambda all differ here
    for gstep, factor in ((1, 0.6), (2, 1.5)):
        search.target = expected * factor
        row = search.arch_step(x, y, gstep, 1)
        ratio = row["expected_ms"] / search.target
        assert (ratio > 1.2) if factor < 1 else (ratio < 0.8)  # the step moved the expectation only a little
        assert row["lat_loss"] == pytest.approx(0.1 * abs(ratio - 1.0), rel=1e-5)


# ---- warm-up: 10 epochs of weight steps only ----------------------------------------------------------------
def test_the_first_ten_epochs_are_warm_up_without_architecture_steps(tmp_path, tiny_space):
    assert DEFAULTS.search.warmup_epochs == 10
    cfg = _raw_config(tmp_path, tiny_space, {"epochs": 11, "elastic": False}, unstated=("warmup_epochs",))
    search = TFNASSearch(cfg, tmp_path / "run")
    arch_epochs = []
    real = search.arch_step

    def spy(x, y, gstep, epoch):
        arch_epochs.append(epoch)
        return real(x, y, gstep, epoch)

    search.arch_step = spy
    search.run()
    assert arch_epochs == [10] * (search.steps_per_epoch // 2)  # epoch 11 only (arch_every 2)
    assert [r["warmup"] for r in search.history] == [True] * 10 + [False]
    assert ["held_loss" in r for r in search.history] == [False] * 10 + [True]


# ---- elastic width scaling: the reference's rule, channels kept among all --------------------------------------
def test_epoch_ends_scale_widths_by_the_tfnas_rule_keeping_channels_among_all(tmp_path, tiny_space, monkeypatch):
    assert DEFAULTS.search.elastic_rule == "tfnas"
    real = ELASTIC_RULES["tfnas"]
    assert real.keep_among == "all"
    calls: dict[str, list] = {"tfnas": [], "grid": [], "among": []}

    def spy(name, rule):
        def scale(lat, ops, widths, depths, target, step):
            calls[name].append(target)
            return rule.scale(lat, ops, widths, depths, target, step)

        return ElasticRule(scale, rule.keep_among)

    rules = ELASTIC_RULES
    for name in ("tfnas", "grid"):
        rules = rules.replaced(name, spy(name, ELASTIC_RULES[name]))
    monkeypatch.setattr(derive_module, "ELASTIC_RULES", rules)  # the epoch end's derivation reads the rules here
    real_apply = derive_module.apply_widths

    def apply_spy(model, ops, widths, optimizer=None, among="active"):
        calls["among"].append(among)
        return real_apply(model, ops, widths, optimizer, among)

    monkeypatch.setattr(derive_module, "apply_widths", apply_spy)
    cfg = _raw_config(
        tmp_path, tiny_space, {"epochs": 3, "warmup_epochs": 1, "elastic": True}, unstated=("elastic_rule",)
    )
    search = TFNASSearch(cfg, tmp_path / "run")
    search.run()
    # after each post-warm-up epoch: the tfnas rule toward the target, its channels ranked among all of them
    assert calls["tfnas"] == [search.target] * 2 and calls["grid"] == []
    assert calls["among"] == ["all", "all"]


# ---- augmentation: the weights' split of real data only -----------------------------------------------------
def test_search_on_real_data_augments_the_weights_split_only_by_default(tmp_path, tiny_space):
    assert DEFAULTS.data.augment is True
    root = tmp_path / "cifar"
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _write_bin(folder, f"data_batch_{i}.bin", *_fake_cifar_arrays(8, i))
    _write_bin(folder, "test_batch.bin", *_fake_cifar_arrays(4, 99))
    data = {"source": str(root)}
    cfg = _raw_config(tmp_path, tiny_space, {"epochs": 2, "warmup_epochs": 1}, data, unstated=("augment",))
    del cfg["data"]["num_samples"], cfg["data"]["held_out_fraction"]  # real data: the default 80/20 split
    search = TFNASSearch(cfg, tmp_path / "run")
    train, held = search.data.train, search.data.held_out
    assert len(train) == 32 and len(held) == 8
    torch.manual_seed(0)
    # the weights' split: pad-crop + flip draws a new view of an image at each read
    assert any(not torch.equal(train[i][0], train[i][0]) for i in range(4) for _ in range(5))
    # the architecture's split: every read of every item the same, and so the architecture steps' batches
    assert all(torch.equal(held[i][0], held[i][0]) for i in range(len(held)) for _ in range(3))
    assert torch.equal(search._held_batch(0)[0], search._held_batch(0)[0])
