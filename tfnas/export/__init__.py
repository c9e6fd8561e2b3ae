"""Deployment: ONNX export with checker and parity tests."""

from __future__ import annotations

from tfnas.export.onnx import check_parity, export_onnx

__all__ = ["check_parity", "export_onnx"]
