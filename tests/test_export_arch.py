"""``export_arch``, the library call behind ``tfnas export``: what a Python user gets without the CLI."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from profilers.quantize import is_quantized_file
from tfnas.export.quantize import Int8Options
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.export import export_arch
from tfnas.mbv2.net import build_model
from tfnas.utils.checkpoint import save_checkpoint


def _run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_export_arch_writes_the_trained_network_within_the_parity_bound(tiny_space, tmp_path):
    arch = Architecture.uniform(tiny_space, "k3_e6_se")
    torch.manual_seed(3)
    model = build_model(arch, 6).eval()
    save_checkpoint(tmp_path / "model.pt", {"model": model.state_dict()})
    out = tmp_path / "m.onnx"
    report = export_arch(arch, out, weights=tmp_path / "model.pt", batch=2, atol=1e-4)
    assert out.is_file() and report["onnx"] == str(out) and report["num_classes"] == 6  # from the weights
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    y = _run(out, x.numpy())  # loads in ONNX Runtime and computes what the trained PyTorch network computes
    assert y.shape == (2, 6) and np.abs(y - ref).max() <= 1e-4
    assert report["max_abs_diff"] <= 1e-4 and report["params"] == sum(p.numel() for p in model.parameters())


def test_export_arch_int8_writes_a_quantized_model_beside_its_fp32_one(tiny_space, tmp_path):
    arch = Architecture.uniform(tiny_space, "k3_e6_se")
    out = tmp_path / "q.onnx"
    opts = Int8Options("generated", calibration_samples=8, held_out=16, num_samples=100, rounds=1)
    report = export_arch(arch, out, num_classes=4, int8=opts)
    fp32 = tmp_path / "q.fp32.onnx"
    assert report["onnx"] == str(out) and report["onnx_fp32"] == str(fp32)
    assert is_quantized_file(out) and not is_quantized_file(fp32)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y8, y32 = _run(out, x), _run(fp32, x)
    assert y8.shape == y32.shape == (1, 4) and np.isfinite(y8).all()
    assert report["held_out"]["samples"] == 16 and report["latency"]["int8_ms"] > 0
