"""Every config is strict: unknown keys, wrong types and ranges are errors naming the file and the key path."""

from __future__ import annotations

import json

import pytest
import yaml

from tfnas.config import load_file
from tfnas.darts.config import DartsSearchConfig, DartsTrainConfig, resolve_search_config
from tfnas.errors import ConfigError
from tfnas.mbv2.search.config import load_config
from tfnas.mbv2.space import MBV2Space
from tfnas.utils.io import read_json, read_yaml, repo_root

CONFIGS = repo_root() / "configs"
DARTS_CONFIGS = sorted((CONFIGS / "darts").glob("*.yaml"))
SEARCH_CONFIGS = sorted((CONFIGS / "search").glob("*.yaml"))
SPACE_FILES = sorted((CONFIGS / "spaces").glob("*.yaml"))


def _leaves(d, path=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k), v


def _at(d, path):
    for k in path:
        d = d[k]
    return d


def _assert_every_key_is_used(raw: dict, resolved: dict, name: str) -> None:
    """Each value the file states is the value the run gets: nothing is silently ignored or renamed."""
    for path, value in _leaves(raw):
        assert _at(resolved, path) == value, f"{name}: {'.'.join(map(str, path))}"


@pytest.mark.parametrize("path", DARTS_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_darts_config_is_valid_and_fully_used(path):
    from tfnas.darts.search import build_search_model

    raw = read_yaml(path)
    cfg = resolve_search_config(raw, str(path))
    assert cfg.space.name == raw.pop("space")  # a space is named in the file, held whole by the config
    _assert_every_key_is_used(raw, cfg.to_dict(), path.name)
    assert cfg.data.source == "generated"
    if cfg.latency is None:  # the latency table is checked by its own tests
        build_search_model(cfg, 10, 3)


@pytest.mark.parametrize("path", SEARCH_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_search_config_is_valid_and_fully_used(path):
    _assert_every_key_is_used(read_yaml(path), load_config(path).to_dict(), path.name)


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_every_shipped_space_is_valid(path):
    from tfnas.mbv2.space import load_space

    raw = json.loads(json.dumps(read_yaml(path)))  # JSON keys, as the saved form has them
    _assert_every_key_is_used(raw, load_file(path, MBV2Space, "space").to_dict(), path.name)
    assert load_space(path).name == path.stem


def test_shipped_darts_spaces_file_is_valid():
    from tfnas.darts.space import available_cell_spaces, spaces_file

    assert available_cell_spaces() == ["s0", "s0_no_none", "s1", "s2", "s3", "s4"]
    assert "_about" in read_json(spaces_file())


# ---- the probes of the hardening issue: each is an error naming file, key path and the allowed keys ----------
def _darts_file(tmp_path, **sections):
    cfg = read_yaml(CONFIGS / "darts" / "pc_darts.yaml")
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({"search": {"epoch": 3}}, r"unknown key 'search.epoch' \(allowed: epochs, .*\); did you mean 'epochs'\?"),
        ({"supernet": {"num_cell": 5}}, r"unknown key 'supernet.num_cell' .*did you mean 'num_cells'\?"),
        ({"method": {"name": "pc_darts", "partial_K": 2}}, r"unknown key 'method.partial_K' .*partial_k"),
        ({"search": {"epochs": "two"}}, r"key 'search.epochs' = 'two': expected an integer"),
        ({"supernet": {"C": "eight"}}, r"key 'supernet.C' = 'eight': expected an integer"),
        ({"search": {"epochs": 0}}, r"key 'search.epochs' = 0: expected a number >= 1"),
        ({"search": {"epochs": -1}}, r"key 'search.epochs' = -1"),
        ({"search": {"max_steps_per_epoch": -3}}, r"key 'search.max_steps_per_epoch' = -3"),
        ({"search": {"threads": 2}}, r"unknown key 'search.threads' .*moved to 'runtime.threads'"),
        ({"method": {"name": "pc_dart"}}, r"method: name = 'pc_dart'.*did you mean 'pc_darts'\?"),
        ({"search": {"w_optimizer": {"lr": 0.1}}}, r"missing key 'search.w_optimizer.name'"),
        ({"hessian": {"early_stop": {"windw": 3}}}, r"unknown key 'hessian.early_stop.windw'.*'window'"),
        ({"latency": {"table": "x.json", "target_ms": "6"}}, r"'latency.target_ms' = '6'.*remove the quotes"),
    ],
)
def test_darts_config_probes(tmp_path, sections, expected):
    path = _darts_file(tmp_path, **sections)
    with pytest.raises(ConfigError, match=expected) as e:
        resolve_search_config(read_yaml(path), str(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda d: d["head"].update(dropuot=0.2),
            r"unknown key 'head.dropuot' \(allowed: .*\); did you mean 'dropout'",
        ),
        (lambda d: d["width"]["bound_factor"].update(three=4), r"'width.bound_factor.three'.*must be an integer"),
        (lambda d: d["input"].update(resolution="224"), r"'input.resolution' = '224'.*remove the quotes"),
        (lambda d: d["stem"].update(colour=1), r"unknown key 'stem.colour'"),
        (lambda d: d["width"].update(bound_factor={3: 0, 6: 8}), r"bound_factor.*>= 1"),
    ],
)
def test_space_yaml_nested_keys_are_checked(tmp_path, tiny_space_dict, mutate, expected):
    from tfnas.mbv2.space import load_space

    mutate(tiny_space_dict)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_space_dict))
    with pytest.raises(ConfigError, match=expected) as e:
        load_space(path)
    assert "tiny.yaml" in str(e.value)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"search": {"temperature": "5"}}, r"'search.temperature' = '5': expected a number \(a quoted number"),
        ({"search": {"temperature": "hot"}}, r"'search.temperature' = 'hot': expected a number"),
        ({"runtime": {"threads": -1}}, r"'runtime.threads' = -1: expected a number >= 1"),
        ({"search": {"epoch": 3}}, r"unknown key 'search.epoch'.*did you mean 'epochs'"),
        ({"optim": {"weights": {"name": "sgd", "lr": "3e-4"}}}, r"write it with a dot"),
        ({"optim": {"arch": {"name": "adam", "lr": 0.01, "momentum": 0.9}}}, r"momentum is an sgd argument"),
        ({"target_ms": float("nan")}, r"'target_ms' = nan"),
        ({"search": {"epochs": 2, "warmup_epochs": 3}}, r"no architecture step would run"),
        ({"name": "../../../x"}, r"'name' = '../../../x': a run name is a plain file name"),
    ],
)
def test_search_config_probes(tmp_path, data, expected):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=expected) as e:
        load_config(path)
    assert str(path) in str(e.value)


def test_darts_train_config_is_strict(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("net: {C: 8, num_cell: 5}\ntrain: {epochs: 1, threads: 2}\n")
    with pytest.raises(ConfigError, match=r"train.yaml: unknown key 'net.num_cell'.*did you mean 'num_cells'"):
        load_file(path, DartsTrainConfig, "DARTS train config")


def test_tfnas_train_config_is_strict(tmp_path, capsys):
    from tfnas.cli import main

    path = tmp_path / "train.yaml"
    path.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert main(["train", "arch.json", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.yaml: unknown key 'learning_rate' (allowed: " in err and " lr, " in err
    assert main(["train", "arch.json", "--epochs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "key 'epochs' = 0" in capsys.readouterr().err


def test_many_problems_are_listed_together(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps({"search": {"epochs": "x", "seed": -1}, "data": {"batch_size": 0}}))
    with pytest.raises(ConfigError) as e:
        load_file(path, DartsSearchConfig, "DARTS config")
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(str(path) in line for line in lines)


def test_darts_resume_may_change_runtime_threads(tmp_path, capsys):
    """`tfnas darts search --resume --threads 2` continues a run: threads live under runtime."""
    from tests.test_darts_cli import write_cfg
    from tfnas.cli import main
    from tfnas.utils.checkpoint import load_checkpoint

    cfg = read_yaml(write_cfg(tmp_path))
    cfg["search"].update(epochs=2, max_steps_per_epoch=1)
    cfg["hessian"]["every"] = 0
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    common = ["darts", "search", "--config", str(path), "--out", str(out), "--no-progress"]
    assert main([*common, "--epochs", "1", "--threads", "1"]) == 0  # an 'interrupted' run: 1 of 2 epochs
    saved = json.loads((out / "config.json").read_text())
    saved["search"]["epochs"] = 2  # as if the run had been stopped after its first epoch
    (out / "config.json").write_text(json.dumps(saved))
    assert main([*common, "--resume", "--threads", "2"]) == 0, capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2  # finished epochs
