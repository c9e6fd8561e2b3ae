"""Shared test fixtures: tiny spaces and tiny shapes keep the suite fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

# Tiny tensors gain nothing from more threads, and spinning OpenMP threads crawl on a shared machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _torch_global_state():
    """Each test starts from one thread and non-deterministic algorithms, whatever the test before it set: a
    search or training run sets ``torch.set_num_threads(runtime.threads)`` (the demo configs say 2) and
    ``use_deterministic_algorithms``, and the setting outlived its test. Two xdist workers at 2 threads each on a
    2-core host spun OpenMP threads against each other: measured on an Intel host, a DARTS test took 89 s in the
    suite and 2.6 s alone, and the suite 637-860 s."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(deterministic)


# The shipped smoke-test space (also `bench_quality.py --quick`): one definition for both.
TINY_SPACE = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "spaces" / "tiny.yaml").read_text())


@pytest.fixture
def tiny_space_dict() -> dict:
    import copy

    return copy.deepcopy(TINY_SPACE)


@pytest.fixture
def tiny_space():
    from tfnas.mbv2.space import space_from_dict

    return space_from_dict(TINY_SPACE, "tiny.yaml")


@pytest.fixture
def files(tiny_space, tiny_space_dict, tmp_path):
    """A tiny space file, a uniform architecture of it and a synthetic table (CLI journeys)."""
    from tests.test_latency_table import make_table
    from tfnas.mbv2.arch import Architecture

    space_yaml = tmp_path / "tiny.yaml"
    space_yaml.write_text(yaml.safe_dump(tiny_space_dict))
    arch = Architecture.uniform(tiny_space, "k3_e6_se").to_dict()
    arch["space"] = str(space_yaml)
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(json.dumps(arch))
    lut = make_table(tiny_space).save(tmp_path / "lut.json")
    return {"space": space_yaml, "arch": arch_path, "arch_doc": arch, "lut": lut, "dir": tmp_path}
