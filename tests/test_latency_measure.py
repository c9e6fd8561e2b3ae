"""End-to-end measurement on ONNX Runtime (tiny net, tiny protocol) and the torch-cuda backend."""

from __future__ import annotations

import math

import pytest
import torch

from profilers.timing import TimingProtocol
from tfnas.errors import TfnasError
from tfnas.latency.measure import Runtime, TimingSettings, measure_networks
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.measure import ArchNetwork

TINY = TimingProtocol(warmup=1, min_repeats=3, max_repeats=10, floor_repeats=2, max_time_s=0.2, check_every=1)


def measure_once(arch, backend="ort", threads=1, batch=1, protocol=None):
    """One measurement of ``arch`` on a runtime (one round)."""
    return measure_networks([ArchNetwork(arch)], Runtime(backend, threads, batch), TimingSettings(protocol=protocol))[
        0
    ][0]


def test_measure_returns_a_sane_measurement(tiny_space):
    arch = Architecture.uniform(tiny_space, "k3_e6_se")
    m = measure_once(arch, "ort", threads=1, batch=1, protocol=TINY)
    assert math.isfinite(m.median_ms) and m.median_ms > 0
    # the reported latency is the protocol's low quantile of the same samples: never above their median
    assert m.statistic == TINY.statistic and 0 < m.latency_ms <= m.median_ms
    assert m.spread_ms >= 0 and 2 <= m.repeats <= 10 and m.cv >= 0 and m.samples_kept <= m.repeats


def test_measure_rejects_unknown_backend(tiny_space):
    with pytest.raises(TfnasError, match="unknown backend 'tpu'"):
        measure_once(Architecture.uniform(tiny_space, "k3_e3"), "tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch-cuda backend needs a CUDA GPU (none here)")
def test_torch_cuda_measurement(tiny_space):
    m = measure_once(Architecture.uniform(tiny_space, "k3_e3"), "torch-cuda", batch=2, protocol=TINY)
    # the protocol was followed on the GPU as on ORT: its statistic, a low quantile of the same samples (never
    # above their median), within its repeat bounds
    assert m.statistic == TINY.statistic and 0 < m.latency_ms <= m.median_ms
    assert m.spread_ms >= 0 and 2 <= m.repeats <= 10 and m.samples_kept <= m.repeats


def test_torch_cuda_without_gpu_is_a_clear_error(tiny_space):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TfnasError, match="needs a CUDA GPU"):
        measure_once(Architecture.uniform(tiny_space, "k3_e3"), "torch-cuda", protocol=TINY)


def test_interleaved_rounds(tiny_space):
    from tfnas.latency.measure import round_latency

    archs = [Architecture.uniform(tiny_space, "k3_e3"), Architecture.uniform(tiny_space, "k5_e3", width="max")]
    runs = measure_networks([ArchNetwork(a) for a in archs], Runtime("ort"), TimingSettings(rounds=2, protocol=TINY))
    assert [len(r) for r in runs] == [2, 2]
    assert all(round_latency(r) > 0 for r in runs)


def test_a_search_times_its_network_in_a_process_of_its_own():
    """The closed loop and the closing figure run in a spawned process (a process that has just trained timed the
    README's network 3% slower); the switch is on by default, and the result comes back."""
    import os

    import tfnas.latency.measure as measure_mod

    assert measure_mod.FRESH_PROCESS
    assert measure_mod.in_fresh_process(os.getpid) != os.getpid()
    assert measure_mod.in_fresh_process(divmod, 7, 2) == (3, 1)
