"""Deploy path: a derived architecture exports to a checked ONNX file that matches PyTorch."""

from __future__ import annotations

import json

import onnx
import pytest
import timm
import torch
import yaml

from tfnas.cli import main
from tfnas.mbv2.arch import Architecture


@pytest.fixture
def arch_file(tmp_path, tiny_space_dict, monkeypatch):
    from tfnas.mbv2 import space as mbv2

    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "tiny.yaml").write_text(yaml.safe_dump(tiny_space_dict))
    monkeypatch.setattr(mbv2, "spaces_dir", lambda: tmp_path / "spaces")
    space = mbv2.load_space("tiny")
    path = tmp_path / "arch.json"
    Architecture.uniform(space, "k3_e6_se").save(path)
    return path


def test_export_writes_checked_onnx_within_parity(arch_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(arch_file), "--out", str(out), "--batch", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    onnx.checker.check_model(onnx.load(out))
    assert report["max_abs_diff"] < 1e-4
    assert report["input_shape"] == [2, 3, 32, 32]


def test_export_bad_arch_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["export", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "bad.json is not valid JSON" in capsys.readouterr().err


def test_timm_entry_point_builds_the_derived_network(arch_file):
    import tfnas.mbv2.timm_model  # noqa: F401  (registers the model)

    model = timm.create_model("tfnas_derived", arch=str(arch_file), num_classes=7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    assert model.get_classifier().out_features == 7


def test_timm_entry_point_passes_on_or_rejects_what_train_py_gives(arch_file):
    import tfnas.mbv2.timm_model  # noqa: F401  (registers the model)
    from tfnas.errors import ConfigError

    # what timm's train.py hands every model (None: flag not given; create_model drops those)
    train_py = dict(pretrained=False, in_chans=3, num_classes=5, drop_rate=0.3, drop_path_rate=None,
                    drop_block_rate=None, global_pool=None, bn_momentum=0.01, bn_eps=1e-3, scriptable=None,
                    checkpoint_path=None)  # fmt: skip
    model = timm.create_model("tfnas_derived", arch=str(arch_file), **train_py)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5
    assert model.head.dropout.p == 0.3 and model.drop_rate == 0.3
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    no_drop = timm.create_model("tfnas_derived", arch=str(arch_file), drop_rate=0.0, drop_path_rate=0.0)
    assert isinstance(no_drop.head.dropout, torch.nn.Identity)
    for bad, match in [
        ({"in_chans": 1}, r"in_chans=1, but the architecture's space takes 3"),
        ({"drop_path_rate": 0.1}, "no stochastic depth"),
        ({"global_pool": "max"}, "average only"),
        ({"colour": 1}, r"unsupported arguments \['colour'\]"),
        ({"pretrained": True}, "no pretrained weights"),
    ]:
        with pytest.raises(ConfigError, match=match):
            timm.create_model("tfnas_derived", arch=str(arch_file), **bad)


def test_export_takes_trained_weights_and_names_a_mismatch(arch_file, tmp_path, capsys):
    from onnx import numpy_helper

    from tfnas.mbv2.arch import load_arch
    from tfnas.mbv2.net import build_model
    from tfnas.utils.checkpoint import save_checkpoint

    arch = load_arch(arch_file)
    model = build_model(arch)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        linear.weight.fill_(0.125)  # a marker the export must carry
    run_ckpt = tmp_path / "run" / "checkpoints" / "last.pt"  # a training run's checkpoint, as written
    save_checkpoint(run_ckpt, {"epoch": 1, "state": {"model": model.state_dict()}})
    out = tmp_path / "a.onnx"
    assert main(["export", str(arch_file), "--out", str(out), "--weights", str(run_ckpt)]) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] < 1e-4
    values = [numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer]
    assert any(v.size == linear.weight.numel() and (v == 0.125).all() for v in values)

    other = build_model(Architecture.uniform(arch.space, "k3_e3"))
    save_checkpoint(tmp_path / "other.pt", {"model": other.state_dict()})
    bad = ["export", str(arch_file), "--out", str(tmp_path / "b.onnx"), "--weights", str(tmp_path / "other.pt")]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "other.pt do not fit this model" in err and "wrong shape" in err
