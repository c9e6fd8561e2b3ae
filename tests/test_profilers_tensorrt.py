"""TensorRT backend: a clear error without TensorRT; a real profile where it exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from profilers.backends import get_backend
from profilers.demo import write_demo_bundle
from profilers.errors import ProfilerError
from profilers.run import profile_bundle
from profilers.timing import TimingProtocol

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
TINY = TimingProtocol(
    warmup=2, min_repeats=3, max_repeats=10, floor_repeats=2, max_time_s=0.2, remeasure_attempts=0, passes=1
)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed; the missing-package error cannot be shown")
def test_missing_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProfilerError, match="tensorrt is not installed; install the tensorrt extra on the GPU machine"):
        get_backend("tensorrt")
    bundle = write_demo_bundle(tmp_path / "bundle")
    with pytest.raises(ProfilerError, match="tensorrt is not installed"):
        profile_bundle(bundle, tmp_path / "lut.json", backend="tensorrt", protocol=TINY, progress=False)
    assert not (tmp_path / "lut.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed (needs the tensorrt extra on a GPU machine)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_profiles_tiny_bundle(tmp_path: Path, precision: str) -> None:
    bundle = write_demo_bundle(tmp_path / "bundle", widths=(4, 8))
    out = tmp_path / "lut.json"
    table = profile_bundle(bundle, out, backend="tensorrt", precision=precision, protocol=TINY, progress=False)
    assert table.complete and table.n_points() == 5
    assert table.fingerprint["runtime"] == "tensorrt" and table.fingerprint["precision"] == precision
    assert table.fingerprint["gpu_model"]
