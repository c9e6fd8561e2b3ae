"""Property-style: random mutations of valid files (wrong types, missing keys, unknown keys, out-of-range
values, truncation) fed to their loaders. Whatever comes out is a loaded object or one of the project's own
errors naming the file: never a raw KeyError, TypeError or ValueError from deep inside."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from profilers.errors import ProfilerError
from tfnas.errors import TfnasError
from tfnas.utils.io import read_yaml, repo_root

N = 120  # mutations per file kind (seeded: a failure reproduces)
ODD_VALUES = [None, "x", "5", "3e-4", 0, -1, 1.5, -2.5, 10**12, True, [], {}, [1, "a"], {"k": 1}, float("nan"), ""]


def _containers(doc, path=()):
    """Every (path, mapping-or-list) in the document, the root included."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        if isinstance(v, (dict, list)):
            yield from _containers(v, (*path, k))


def _leaves(doc, path=()):
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        if isinstance(v, (dict, list)) and v:
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k), v


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def mutate(doc: dict, rng: random.Random) -> tuple[str, object]:
    """One random mutation: ('text', truncated text), ('duplicate', text with a key twice) or ('doc', document)."""
    doc = copy.deepcopy(doc)
    kind = rng.choice(["type", "type", "range", "missing", "unknown", "truncate", "duplicate"])
    leaves = list(_leaves(doc))
    if kind == "truncate":
        text = json.dumps(doc)
        return "text", text[: rng.randrange(len(text))]
    if kind == "duplicate":  # a key twice in one mapping (JSON text is YAML too): the first value would be lost
        _, container = rng.choice([c for c in _containers(doc) if isinstance(c[1], dict) and c[1]])
        key = rng.choice(list(container))
        container[key] = {"__dup__": container[key]}
        text = json.dumps(doc)
        value = json.dumps(container[key]["__dup__"])
        return "text", text.replace(
            json.dumps({"__dup__": container[key]["__dup__"]}), f"{value}, {json.dumps(key)}: {value}", 1
        )
    if kind == "missing":
        path, container = rng.choice([c for c in _containers(doc) if isinstance(c[1], dict) and c[1]])
        del container[rng.choice(list(container))]
    elif kind == "unknown":
        path, container = rng.choice([c for c in _containers(doc) if isinstance(c[1], dict)])
        container[rng.choice(["colour", "epoch", "dropuot", "Partial_K"])] = 1
    elif kind == "range" and any(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in leaves):
        path, value = rng.choice([(p, v) for p, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)])
        _set(doc, path, rng.choice([-value, 0, -1, value * 1000, 10**9]))
    else:
        path, _ = rng.choice(leaves)
        _set(doc, path, rng.choice(ODD_VALUES))
    return "doc", doc


def check_loader(tmp_path: Path, doc: dict, load: Callable[[Path], object], suffix: str, seed: int) -> int:
    """Feed N mutations of ``doc`` to ``load``; returns how many were refused (all with a project error)."""
    rng = random.Random(seed)
    refused = 0
    for i in range(N):
        form, value = mutate(doc, rng)
        path = tmp_path / f"m{i}{suffix}"
        if form in ("text", "duplicate"):
            path.write_text(value)
        elif suffix == ".json":
            path.write_text(json.dumps(value))
        else:
            path.write_text(yaml.safe_dump(value))
        try:
            load(path)
            assert form != "duplicate", f"mutation {i}: a key twice in one mapping was accepted: {value[:300]}"
        except (TfnasError, ProfilerError) as e:
            refused += 1
            assert path.name in str(e), f"mutation {i}: error does not name the file: {e}"
        except Exception as e:
            pytest.fail(f"mutation {i} of {path.name} escaped as {type(e).__name__}: {e}\n{path.read_text()[:500]}")
    return refused


def test_arch_files(tmp_path, tiny_space):
    from tfnas.mbv2.arch import Architecture, load_arch

    doc = Architecture.uniform(tiny_space, "k3_e3").to_dict()
    assert check_loader(tmp_path, doc, lambda p: load_arch(p, tiny_space), ".json", 1) > N // 2


def test_search_configs(tmp_path):
    from tfnas.mbv2.search.config import load_config

    doc = read_yaml(repo_root() / "configs" / "search" / "tfnas_cpu_demo.yaml")
    assert check_loader(tmp_path, doc, load_config, ".yaml", 2) > N // 2


def test_darts_configs(tmp_path):
    from tfnas.darts.config import resolve_search_config

    def load(p: Path) -> dict:
        return resolve_search_config(read_yaml(p, "DARTS config"), str(p))

    for i, name in enumerate(("pc_darts", "latency_aware", "sdarts_adv")):
        doc = read_yaml(repo_root() / "configs" / "darts" / f"{name}.yaml")
        assert check_loader(tmp_path, doc, load, ".yaml", 10 + i) > N // 3


def test_genotype_files(tmp_path):
    from tfnas.darts.space import PUBLISHED, load_genotype

    for i, name in enumerate(("DARTS_V2", "PDARTS")):
        doc = PUBLISHED[name].to_dict()
        assert check_loader(tmp_path, doc, load_genotype, ".json", 20 + i) > N // 2


def test_space_files(tmp_path, tiny_space_dict):
    from tfnas.mbv2.space import load_space

    assert check_loader(tmp_path, tiny_space_dict, load_space, ".yaml", 3) > N // 2


def test_luts(tmp_path, tiny_space):
    """profilers.lut (device side) and the host's open_table: both raise only their own error types."""
    from tests.test_search_tfnas import synthetic_table
    from tfnas.latency.table import open_table
    from tfnas.mbv2.keys import SpaceNeeds

    src = tmp_path / "valid.json"
    synthetic_table(tiny_space).save(src)
    doc = json.loads(src.read_text())
    doc["entries"] = dict(list(doc["entries"].items())[:6])  # a few entries keep the mutations on every part
    assert check_loader(tmp_path, doc, lambda p: open_table(p, SpaceNeeds(tiny_space)), ".json", 4) > 0
