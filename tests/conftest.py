"""Shared test fixtures: tiny spaces and tiny shapes keep the suite fast."""

from __future__ import annotations

import pytest
import torch

# Tiny tensors gain nothing from more threads, and spinning OpenMP threads crawl on a shared machine.
torch.set_num_threads(1)

TINY_SPACE = {
    "name": "tiny",
    "input": {"resolution": 32, "channels": 3},
    "num_classes": 10,
    "stem": {"out": 8, "kernel": 3, "stride": 2, "act": "relu"},
    "first_block": {"kernel": 3, "mid": 8, "out": 8, "stride": 1, "se": True, "act": "relu"},
    "stages": [
        {"layers": 2, "out": 8, "stride": 1, "act": "relu"},
        {"layers": 2, "out": 16, "stride": 2, "act": "swish"},
    ],
    "head": {"out": 32, "act": "swish"},
    "ops": {
        "k3_e3": {"kernel": 3, "expansion": 3, "se": False},
        "k3_e6_se": {"kernel": 3, "expansion": 6, "se": True},
        "k5_e3": {"kernel": 5, "expansion": 3, "se": False},
    },
    "width": {"bound_factor": {3: 4, 6: 8}, "min_fraction": 0.5, "se_factor": {3: 1, 6: 2}},
}


@pytest.fixture
def tiny_space_dict() -> dict:
    import copy

    return copy.deepcopy(TINY_SPACE)


@pytest.fixture
def tiny_space():
    from tfnas.spaces.mbv2 import space_from_dict

    return space_from_dict(TINY_SPACE, "tiny.yaml")
