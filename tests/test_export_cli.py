"""Deploy path: a derived architecture exports to a checked ONNX file that matches PyTorch."""

from __future__ import annotations

import json

import onnx
import pytest
import timm
import torch
import yaml

from tfnas.arch import Architecture
from tfnas.cli import main


@pytest.fixture
def arch_file(tmp_path, tiny_space_dict, monkeypatch):
    from tfnas.spaces import mbv2

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
    import tfnas.export.timm_model  # noqa: F401  (registers the model)

    model = timm.create_model("tfnas_derived", arch=str(arch_file), num_classes=7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    assert model.get_classifier().out_features == 7
