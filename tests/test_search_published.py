"""The published TF-NAS supernet and schedules are the defaults (issue 14, section 1), and the comparison
that asks whether the search beats chance at the same latency (section 2)."""

from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tests.test_data import _fake_cifar_arrays, _write_bin
from tests.test_search_tfnas import synthetic_table, tiny_config
from tfnas.mbv2.search.config import DEFAULTS
from tfnas.mbv2.search.elastic import ELASTIC_RULES, keep_order, scale_widths_official
from tfnas.mbv2.search.searcher import TFNASSearch
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.utils.io import read_yaml, repo_root


# ---- 1. batch norms: no affine parameters, batch statistics, everywhere ------------------------------------------
def test_supernet_batch_norms_are_plain_as_the_reference(tiny_space):
    net = TFNASSupernet(tiny_space)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.affine and not m.track_running_stats for m in bns)  # stem, first block, head
    for layer in net.layers:
        for op in layer.ops:  # candidate ops normalise functionally: no scale, no shift
            assert op.bn1_w is None and op.bn2_w is None and op.bn3_w is None and op.bn3_b is None
    assert not any("running" in k for k in net.state_dict())
    affine = TFNASSupernet(tiny_space, bn="affine")  # the option: learnable BNs, residual ops starting at zero
    residual = [layer for layer in affine.layers if layer.has_residual]
    assert residual and all(float(op.bn3_w.detach().abs().sum()) == 0 for layer in residual for op in layer.ops)
    assert DEFAULTS.search.bn == "plain"


# ---- 2./3. optimisers rebuilt and the cosine stepped once per epoch --------------------------------------------
@pytest.mark.parametrize("reset", ["epoch", "never"])
def test_optimisers_are_rebuilt_every_epoch(tmp_path, tiny_space, reset):
    cfg = tiny_config(tmp_path, tiny_space, epochs=3, warmup_epochs=1, optimizer_reset=reset)
    cfg["target_ms"] = 1.0
    search = TFNASSearch(cfg, tmp_path / "run")
    seen = []
    real = search.weight_step

    def spy(x, y, gstep, warm):  # the momentum buffers present when each step starts
        seen.append((gstep, id(search.w_opt), len(search.w_opt.state), len(search.a_opt.state)))
        return real(x, y, gstep, warm)

    search.weight_step = spy
    search.run()
    firsts = [row for row in seen if row[0] % search.steps_per_epoch == 0]
    if reset == "epoch":  # the reference: new SGD and Adam every epoch, no momentum carried over
        assert len({row[1] for row in firsts}) == 3 and all(row[2] == row[3] == 0 for row in firsts)
    else:
        assert len({row[1] for row in seen}) == 1 and firsts[1][2] > 0
    assert DEFAULTS.search.optimizer_reset == "epoch"


def test_cosine_steps_once_per_epoch_as_the_reference(tmp_path, tiny_space):
    cfg = tiny_config(tmp_path, tiny_space, epochs=4, warmup_epochs=1)
    cfg["target_ms"] = 1.0
    search = TFNASSearch(cfg, tmp_path / "run")
    base, spe = search.cfg.optim.weights.lr, search.steps_per_epoch
    for e in range(4):  # torch's CosineAnnealingLR(T_max=epochs), one value per epoch, as train_search.py's lr_list
        want = 0.5 * base * (1 + math.cos(math.pi * e / 4))
        assert [search.lr_at(e * spe + i) for i in range(spe)] == pytest.approx([want] * spe)
    assert DEFAULTS.optim.schedule.per == "epoch"


# ---- 4. augmentation: the weights' split of real data only --------------------------------------------------------
def test_search_augments_the_weights_split_of_real_data_only(tmp_path):
    from tfnas.data import build_datasets

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        _write_bin(folder, f"data_batch_{i}.bin", *_fake_cifar_arrays(8, i))
    _write_bin(folder, "test_batch.bin", *_fake_cifar_arrays(4, 99))
    data = build_datasets(tmp_path, resolution=32, held_out_fraction=0.2, augment="train")
    torch.manual_seed(0)
    assert any(not torch.equal(data.train[0][0], data.train[0][0]) for _ in range(5))  # random crop + flip
    assert all(torch.equal(data.held_out[i][0], data.held_out[i][0]) for i in range(len(data.held_out)))
    both = build_datasets(tmp_path, resolution=32, held_out_fraction=0.2, augment="all")  # DARTS: both splits
    assert any(not torch.equal(both.held_out[0][0], both.held_out[0][0]) for _ in range(5))
    assert DEFAULTS.data.augment and DEFAULTS.data.resolution == 224 and DEFAULTS.data.held_out_fraction == 0.2


def test_darts_defaults_follow_the_official_code():
    from tfnas.darts.config import resolve_search_config, resolve_train_config

    s = resolve_search_config({})
    assert s.data.batch_size == 64 and s.data.augment
    cifar = resolve_train_config({})
    assert cifar.data.cutout == 16 and cifar.train.schedule.per == "epoch"
    ddp = read_yaml(repo_root() / "configs" / "search" / "tfnas_gpu_ddp.yaml")
    assert ddp["search"]["batch_size"] == 128 and ddp["optim"]["weights"]["lr"] == pytest.approx(0.025 * 128 / 32)


def test_cutout_zeroes_a_square():
    from tfnas.data.transforms import cutout

    torch.manual_seed(1)
    out = cutout(torch.ones(3, 32, 32), 16)
    zero = (out == 0).all(0)
    assert zero.any() and int(zero.sum()) <= 16 * 16 and (out[:, ~zero] == 1).all()


# ---- 5. elastic width scaling: the official rule --------------------------------------------------------------
def _linear_model() -> SimpleNamespace:
    """Two stages of two layers, every op's width in [8, 16], latency = the sum of the active widths (ms)."""
    return SimpleNamespace(
        space=SimpleNamespace(width_bounds=lambda op, in_ch: (8, 16)),
        op_names=["op"],
        geometry=[SimpleNamespace(in_ch=4)] * 4,
        stage_slices=[(0, 2), (2, 4)],
        arch_ms=lambda ops, widths, depths: float(sum(widths[: depths[0]]) + sum(widths[2 : 2 + depths[1]])),
    )


def test_official_elastic_rule_shrinks_below_then_finer_groups_grow_back():
    """Worked by hand from train_search.py: ratios round(w / min w); shrink all stages until below 40 ms, then
    stage 2 grows back without crossing the target.

    all stages, w_min 8, ratios (1, 2, 2, 1):   (8,12,16,10) 46 -> (8,10,14,9) 41 -> (8,8,12,8) 36 < 40: stop
    stage 2, w_min 8, ratios (2, 1):            (12,8) 36 -> (14,9) 39 -> (16,10) 42 > 40: keep (14, 9)
    """
    lat = _linear_model()
    assert scale_widths_official(lat, [0] * 4, [8, 12, 16, 10], [2, 2], 40.0) == [8, 8, 14, 9]
    # below the target every group grows without crossing it:
    # all, ratios (1, 2, 2, 1): (8,12,12,8) 40 -> (9,14,14,9) 46 -> (10,16,16,10) 52 > 46: keep (9,14,14,9)
    # stage 2, ratios (2, 1): (14,9) -> (16,10) 49 > 46: keep (14, 9)
    assert scale_widths_official(lat, [0] * 4, [8, 12, 12, 8], [2, 2], 46.0) == [9, 14, 14, 9]


def test_official_rule_keeps_the_top_channels_among_all_of_them():
    importance = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 8.0])  # the first 4 active
    assert keep_order(importance, 4, "all")[:4].tolist() == [2, 7, 4, 0]
    assert keep_order(importance, 4, "active")[:4].tolist() == [2, 0, 3, 1]
    assert ELASTIC_RULES["tfnas"].keep_among == "all" and ELASTIC_RULES["grid"].keep_among == "active"


# ---- section 2: the generated task and the comparison ------------------------------------------------------------
def test_shapes_task_has_no_cue_a_linear_model_can_use():
    """A ridge classifier on the pixels stays near chance (10 classes); items are deterministic."""
    from tfnas.data.tasks import ShapesTask

    train, test = ShapesTask(1500, 16, seed=0), ShapesTask(500, 16, seed=1)
    assert torch.equal(train[7][0], ShapesTask(1500, 16, seed=0)[7][0])

    def xy(ds):
        x = torch.stack([ds[i][0].flatten() for i in range(len(ds))]).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1), torch.tensor([ds[i][1] for i in range(len(ds))])

    (x, y), (xt, yt) = xy(train), xy(test)
    w = torch.linalg.solve(
        x.T @ x + 10.0 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ nn.functional.one_hot(y).double()
    )
    acc = float(((xt @ w).argmax(1) == yt).double().mean())
    assert acc < 0.2, acc


def test_digits_task_is_a_fixed_split_of_the_shipped_digits():
    """The digits task: 1,437 train / 360 test images, disjoint, every class present, upsampled to R x R x 3."""
    pytest.importorskip("sklearn", reason="the digits task needs scikit-learn (pip install 'tfnas[bench]')")
    from tfnas.data.tasks import Digits

    train, test = Digits(True, 16), Digits(False, 16)
    assert (len(train), len(test)) == (1437, 360)
    assert train[0][0].shape == (3, 16, 16) and sorted(set(test.targets)) == list(range(10))
    flat = {tuple(train.images[i, 0].flatten().tolist()) for i in range(len(train))}
    assert sum(tuple(test.images[i, 0].flatten().tolist()) in flat for i in range(len(test))) < 5  # near-disjoint


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    import sys

    from tfnas.data.tasks import Digits
    from tfnas.errors import ConfigError

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"scikit-learn: pip install 'tfnas\[bench\]'"):
        Digits(True)


def _bench():
    path = repo_root() / "benchmarks" / "search" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quality_benchmark_quick_mode_draws_first_trains_all_and_resumes(tmp_path, capsys):
    bench = _bench()
    args = SimpleNamespace(out=str(tmp_path), quick=True, lut=None, jobs=1, protocol="issue22", tasks=None,
                           searches_only=False)  # fmt: skip
    summary = bench.run(args)
    task = summary["tasks"]["shapes:0.0"]
    kinds = [n["kind"] for n in task["networks"]]
    assert kinds.count("random") == 2 and kinds.count("uniform") == 3 and "searched" in kinds  # one per op
    plan = json.loads((tmp_path / "shapes_0.0" / "compare" / "plan.json").read_text())
    assert [n["name"] for n in plan["networks"]] == [n["name"] for n in task["networks"]]
    for n in task["networks"]:  # every network at the same budget, and trained
        assert abs(n["predicted_ms"] / plan["target_ms"] - 1) <= 0.01 and 0 <= n["test_acc"] <= 1
    searched = next(n for n in task["networks"] if n["kind"] == "searched")
    random_accs = [n["test_acc"] for n in task["networks"] if n["kind"] == "random"]
    assert searched["rank_among_random"] == 1 + sum(a > searched["test_acc"] for a in random_accs)
    assert task["supernet_held_out_acc"]["tfnas_s0"] is not None
    ranking = task["ranking"]["tfnas_s0"]  # the supernet's inherited top-1 of every compared network, and its tau
    assert set(ranking["inherited"]) == {n["name"] for n in task["networks"]} and ranking["n"] == len(kinds)
    assert ranking["kendall_tau"] is None or -1.0 <= ranking["kendall_tau"] <= 1.0
    # a rerun trains nothing again (resumable): the reports are reused as they are
    stamp = (tmp_path / "shapes_0.0" / "compare" / "nets" / "random_00" / "train_report.json").stat().st_mtime
    bench.run(args)
    assert (tmp_path / "shapes_0.0" / "compare" / "nets" / "random_00" / "train_report.json").stat().st_mtime == stamp
    assert "| tfnas_s0 | searched |" in capsys.readouterr().out


def test_random_architectures_depend_on_the_seed_only(tiny_space):
    from tfnas.mbv2.arch import Architecture
    from tfnas.mbv2.search.compare import CompareConfig, _choice, draw_entries
    from tfnas.mbv2.search.latency import LatencyModel

    lat = LatencyModel(tiny_space, synthetic_table(tiny_space))
    searched = [("s", "searched", Architecture.uniform(tiny_space, "k3_e3"))]
    cfg = CompareConfig(random=3, uniform=["k5_e3"], seed=4)
    a = [e.arch.to_dict() for e in draw_entries(tiny_space, lat, searched, 1.0, cfg)]
    b = [e.arch.to_dict() for e in draw_entries(tiny_space, lat, searched, 1.0, cfg)]
    assert a == b and len(a) == 5
    drawn = draw_entries(tiny_space, lat, searched, 1.0, cfg)[1:]  # random and uniform: moved to the budget
    assert np.allclose([lat.arch_ms(*_choice(lat, e.arch)) for e in drawn], 1.0, rtol=0.01)


def test_tfnas_compare_cli_ranks_an_architecture_file_and_names_a_missing_table(files, tmp_path, capsys):
    """The user's journey: an architecture file, a table, generated data; plan first, a rank per searched net."""
    from tfnas.cli import main

    cfg = tmp_path / "compare.yaml"
    cfg.write_text(yaml.safe_dump({"num_samples": 32, "batch_size": 16, "uniform": ["k3_e3"],
                                   "recipe": {"epochs": 1, "max_steps_per_epoch": 1}}))  # fmt: skip
    out = tmp_path / "cmp"
    rc = main(["compare", str(files["arch"]), "--lut", str(files["lut"]), "--config", str(cfg), "--data", "shapes",
               "--resolution", "8", "--random", "2", "--jobs", "1", "--no-measure", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0 and "beats" in text and "of 2 random networks" in text
    result = json.loads((out / "results.json").read_text())
    assert [n["kind"] for n in result["networks"]] == ["searched", "random", "random", "uniform"]
    assert (out / "plan.json").exists() and (out / "accuracy_vs_latency.png").stat().st_size > 0
    # an architecture that names no table, and no --lut: the error names the file
    rc = main(["compare", str(files["arch"]), "--out", str(tmp_path / "c2")])
    assert rc == 2 and str(files["arch"]) in capsys.readouterr().err


@pytest.mark.parametrize("target", ["-1", "0", "1000000"])
def test_tfnas_compare_refuses_a_budget_no_network_reaches_before_training(files, tmp_path, capsys, target):
    from tfnas.cli import main

    out = tmp_path / "cmp"
    rc = main(["compare", str(files["arch"]), "--lut", str(files["lut"]), "--data", "shapes", "--resolution", "8",
               "--random", "2", "--jobs", "1", "--no-measure", "--target-ms", target, "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and ("must be > 0" in err if float(target) <= 0 else "infeasible" in err)
    assert not (out / "plan.json").exists() and not (out / "nets").exists()  # nothing drawn, nothing trained
