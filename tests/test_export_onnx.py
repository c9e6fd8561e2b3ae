"""ONNX export: checker passes, parity with PyTorch, dynamic batch, atomic write, errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tfnas.errors import TfnasError
from tfnas.export import check_parity, export_onnx


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 16, 16))  # non-trivial BatchNorm running statistics
    return net


def test_export_checks_and_matches_pytorch(tmp_path):
    net = _small_net()
    path = export_onnx(net, tmp_path / "net.onnx", (1, 3, 16, 16))
    assert net.training  # mode restored
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert check_parity(net, path, (1, 3, 16, 16)) < 1e-4
    assert not list(tmp_path.glob("*.tmp*"))


def test_dynamic_batch(tmp_path):
    net = _small_net()
    path = export_onnx(net, tmp_path / "dyn.onnx", (1, 3, 16, 16), dynamic_batch=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((4, 3, 16, 16), np.float32)})[0]
    assert out.shape == (4, 5)
    assert check_parity(net, path, (3, 3, 16, 16), seed=1) < 1e-4


def test_parity_failure_names_bound(tmp_path):
    net = _small_net()
    path = export_onnx(net, tmp_path / "net.onnx", (1, 3, 16, 16))
    with torch.no_grad():
        net[-1].bias.add_(1.0)  # the PyTorch model now differs from the exported one
    with pytest.raises(TfnasError, match="atol=0.0001"):
        check_parity(net, path, (1, 3, 16, 16))
    with pytest.raises(TfnasError, match="not found"):
        check_parity(net, tmp_path / "missing.onnx", (1, 3, 16, 16))
