"""Bad input and user data (issue 11): each probe ends in a clear error naming the file, or a correct result,
and nothing of the user's is overwritten."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import yaml

from profilers.errors import ProfilerError
from tests.test_search_tfnas import _target, tiny_config
from tfnas.cli import main
from tfnas.errors import ConfigError
from tfnas.mbv2.arch import Architecture, load_arch


@pytest.fixture
def search_yaml(tmp_path, tiny_space):
    """A tiny search config file (2 epochs, 1 warm-up) with a feasible target; returns (path, cfg)."""

    def write(**search):
        cfg = tiny_config(tmp_path, tiny_space, **{"epochs": 2, "warmup_epochs": 1, **search})
        cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
        data = {k: v for k, v in cfg.items() if k != "out"}
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


# ---- silent wrong results --------------------------------------------------------------------------------------
def test_epochs_not_above_warmup_is_refused_not_silently_unsearched(search_yaml, tmp_path, capsys):
    path = search_yaml(epochs=4, warmup_epochs=3)
    out = tmp_path / "run"
    assert main(["search", "--config", str(path), "--epochs", "2", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 2 leaves no architecture step after the 3 warm-up epochs" in err and str(path) in err
    assert not out.exists()


def test_search_prints_the_deployment_shape_at_start_and_end(search_yaml, tmp_path, capsys):
    """A table's resolution and device decide what the budget means: both are said at start and end."""
    path = search_yaml()
    assert main(["search", "--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    shape = [
        line for line in out if "32x32 on synthetic [ISA not recorded], synthetic 0 none, 1 thread(s), batch 1" in line
    ]
    assert len(shape) == 2, out
    assert out[0].startswith("search: target") and "lut.json" in out[0]


def test_corrupt_jpeg_is_named_and_skipped_wherever_it_lands(tmp_path, caplog):
    """Policy: skip and count. The bad file is named once and replaced by the next image, in any batch."""
    import numpy as np
    from PIL import Image

    from tfnas.data.folder import ImageFolderDataset

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.jpg")
    bad = tmp_path / "a" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: the header reads, the pixels do not
    ds = ImageFolderDataset(tmp_path, resolution=16)
    x, y = ds[1]  # the bad one
    assert x.shape == (3, 16, 16) and torch.equal(x, ds[2][0])  # its successor took its place
    ds[1]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "skipping unreadable image" in warned[0] and str(bad) in warned[0]
    assert ds.skipped == {str(bad)}
    for f in (tmp_path / "a").iterdir():
        f.write_bytes(b"not an image at all")
    for f in (tmp_path / "b").iterdir():
        f.write_bytes(b"not an image at all")
    with pytest.raises(ConfigError, match=r"unreadable images in a row, e.g. .*0.jpg"):
        ImageFolderDataset(tmp_path, resolution=16)[0]


# ---- user data overwritten or written where it should not be -------------------------------------------------
def test_out_onto_a_users_folder_is_refused_unless_forced(search_yaml, tmp_path, capsys, tiny_space):
    path = search_yaml()
    out = tmp_path / "mine"
    out.mkdir()
    (out / "arch.json").write_text('{"mine": true}')
    args = ["search", "--config", str(path), "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not empty and not a tfnas run (arch.json)" in err and "--force" in err
    assert (out / "arch.json").read_text() == '{"mine": true}'
    assert main([*args, "--force"]) == 0
    assert load_arch(out / "arch.json", tiny_space).meta["name"] == "tiny"
    assert main(args) == 2  # now a finished run of ours: refused as before, with the resume hint
    assert "--resume" in capsys.readouterr().err


def test_out_checks_for_darts_and_train(tmp_path, capsys, tiny_space):
    from tests.test_darts_cli import write_cfg

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text("{}")
    assert main(["darts", "search", "--config", write_cfg(tmp_path), "--out", str(mine)]) == 2
    assert "not a tfnas run (report.json)" in capsys.readouterr().err
    arch = tmp_path / "arch.json"
    Architecture.uniform(tiny_space, "k3_e3").save(arch)
    assert main(["train", str(arch), "--out", str(mine)]) == 2
    assert "not a tfnas run" in capsys.readouterr().err
    assert main(["darts", "train", "--genotype", "DARTS_V1", "--out", str(mine)]) == 2
    assert "not a tfnas run" in capsys.readouterr().err
    assert (mine / "report.json").read_text() == "{}" and sorted(p.name for p in mine.iterdir()) == ["report.json"]


def test_a_config_name_cannot_choose_where_files_land(tmp_path, search_yaml, monkeypatch, capsys):
    path = search_yaml()
    data = yaml.safe_load(path.read_text())
    data["name"] = "../../../x"
    path.write_text(yaml.safe_dump(data))
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["search", "--config", str(path), "--no-progress"]) == 2
    assert "key 'name' = '../../../x': a run name is a plain file name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (work / "runs").exists()


def test_darts_eval_measure_writes_nothing_into_the_working_folder(tmp_path, monkeypatch):
    import tfnas.latency.measure as measure_mod
    from profilers.drift import DriftCancelled

    fig = DriftCancelled(1.1, 2.0, 0.55, 0.5, "this measurement", 1.0, 0.01, True, 5)
    monkeypatch.setattr(measure_mod, "measure_referenced", lambda *a, **k: ([fig], 0.5))
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "r.json"
    args = ["darts", "eval", "--genotype", "DARTS_V1", "--C", "8", "--cells", "5", "--measure", "--json", str(report)]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    latency = json.loads(report.read_text())["latency_ms"]
    assert (latency["value_ms"], latency["raw_ms"], latency["clean"]) == (1.0, 1.1, True)


# ---- tracebacks where a sentence belongs -------------------------------------------------------------------
def test_arch_file_with_a_list_as_op(tmp_path, tiny_space):
    data = Architecture.uniform(tiny_space, "k3_e3").to_dict()
    data["stages"][0]["layers"][1]["op"] = ["k3_e3"]
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"arch.json: key 'stages\[0\].layers\[1\].op' = \['k3_e3'\]: expected a str"):
        load_arch(path, tiny_space)


@pytest.mark.parametrize("command", ["arch", "search"])
def test_a_pickle_given_as_an_arch_or_a_search_config(tmp_path, capsys, command):
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps({"format": "tfnas.arch", "weights": list(range(300))}))
    args = ["arch", str(path)] if command == "arch" else ["search", "--config", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "looks like a Python pickle" in err and "not loaded" in err


def test_a_pickle_given_as_a_lut_says_so(tmp_path):
    """Loaded by profilers.lut (device side): the message must say it is not a JSON table."""
    from tfnas.latency.table import open_table

    path = tmp_path / "lut.json"
    path.write_bytes(pickle.dumps({"entries": {}}))
    with pytest.raises(ProfilerError) as e:  # the root of every user error, host and device side
        open_table(path)
    msg = str(e.value)
    assert str(path) in msg and "not a JSON latency table" in msg and "pickle" in msg.replace(str(path), "")


def test_export_out_onto_a_folder(tmp_path, tiny_space, capsys):
    arch = tmp_path / "arch.json"
    Architecture.uniform(tiny_space, "k3_e3").save(arch)
    assert main(["export", str(arch), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder; give the ONNX file to write" in capsys.readouterr().err


def test_export_weights_of_another_class_count(tmp_path, tiny_space, capsys, monkeypatch):
    from tfnas.mbv2 import space as mbv2
    from tfnas.mbv2.net import build_model
    from tfnas.utils.checkpoint import save_checkpoint

    (tmp_path / "spaces").mkdir()
    from tests.conftest import TINY_SPACE

    (tmp_path / "spaces" / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    monkeypatch.setattr(mbv2, "spaces_dir", lambda: tmp_path / "spaces")
    arch_path = tmp_path / "arch.json"
    arch = Architecture.uniform(tiny_space, "k3_e3")
    arch.save(arch_path)
    save_checkpoint(tmp_path / "w.pt", {"model": build_model(arch, 7).state_dict()})  # trained on 7 classes
    # without --num-classes the weights' class count is used: a correct export
    assert main(["export", str(arch_path), "--out", str(tmp_path / "a.onnx"), "--weights", str(tmp_path / "w.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["num_classes"] == 7
    # a contradicting --num-classes names the class counts, not "another architecture"
    args = ["export", str(arch_path), "--out", str(tmp_path / "b.onnx"), "--weights", str(tmp_path / "w.pt")]
    assert main([*args, "--num-classes", "10"]) == 2
    err = capsys.readouterr().err
    assert "trained for 7 classes, but this model has 10" in err and "--num-classes 7" in err
    assert "another architecture" not in err


# ---- feedback a user notices ---------------------------------------------------------------------------------
def test_progress_without_a_terminal_prints_plain_lines(capsys):
    from tfnas_base.progress import progress

    bar = progress(range(5), total=5, desc="search 1/3")  # stderr is captured: not a terminal
    bar.every_s = 0.0
    for i in bar:
        bar.set_postfix(loss=f"{i:.1f}")
        if i == 2:
            break  # a loop that stops at its step budget still says where it got
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("search 1/3: 1/5 steps") and "left" in lines[0]
    assert lines[-1].startswith("search 1/3: 3/5 steps") and "loss=2.0" in lines[-1] and "\r" not in "".join(lines)
    assert list(progress(range(3), 3, "x", enabled=False)) == [0, 1, 2]  # --no-progress: the items, in silence
    assert capsys.readouterr().err == ""
