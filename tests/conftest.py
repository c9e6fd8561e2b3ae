"""Shared test fixtures: tiny spaces and tiny shapes keep the suite fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

# Tiny tensors gain nothing from more threads, and spinning OpenMP threads crawl on a shared machine.
torch.set_num_threads(1)

# The shipped smoke-test space (also `bench_quality.py --quick`): one definition for both.
TINY_SPACE = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "spaces" / "tiny.yaml").read_text())


@pytest.fixture
def tiny_space_dict() -> dict:
    import copy

    return copy.deepcopy(TINY_SPACE)


@pytest.fixture
def tiny_space():
    from tfnas.spaces.mbv2 import space_from_dict

    return space_from_dict(TINY_SPACE, "tiny.yaml")
