"""Deployment of any ``nn.Module``, no family: ONNX export with checker and parity tests (``onnx``), static int8
quantization with its agreement check (``quantize``). A family's export (``tfnas.mbv2.export``) builds on it."""

from __future__ import annotations

from tfnas.export.onnx import check_parity, export_onnx

__all__ = ["check_parity", "export_onnx"]
