"""One source of truth (issue 15): no import cycles, torch-free spaces, one error root, the setting table,
and the inputs that used to end in a traceback or slip through silently."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tfnas.cli import main
from tfnas.utils.io import repo_root

ROOT = repo_root()


def _module_graph() -> dict[str, set[str]]:
    """Every import between the project's modules, including those inside functions."""
    mods = {}
    for p in [*ROOT.glob("tfnas/**/*.py"), *ROOT.glob("tfnas_base/**/*.py"), *ROOT.glob("profilers/**/*.py")]:
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                dep = resolve(t)
                if dep and dep != name:
                    graph[name].add(dep)
    return graph


def _package_of(module: str) -> str:
    """``tfnas.latency.measure`` -> ``tfnas.latency``; a top-level module (``tfnas.mbv2.arch``) is its own place."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_package_imports_a_package_that_imports_it_back():
    """Packages, not only modules, form no cycle (e.g. latency -> export -> latency), imports in functions too."""
    packages: dict[str, set[str]] = {}
    for m, deps in _module_graph().items():
        pkg = _package_of(m)
        packages.setdefault(pkg, set()).update(d2 for d in deps if (d2 := _package_of(d)) != pkg)

    def reaches(a: str, b: str, seen: set[str]) -> list[str] | None:
        for d in sorted(packages.get(a, ())):
            if d == b:
                return [a, d]
            if d not in seen:
                seen.add(d)
                path = reaches(d, b, seen)
                if path:
                    return [a, *path]
        return None

    cycles = [" -> ".join(path) for p in sorted(packages) if (path := reaches(p, p, set()))]
    assert not cycles, "package cycles:\n  " + "\n  ".join(cycles)


FAMILIES = ("tfnas.mbv2", "tfnas.darts")
INFRASTRUCTURE = ("tfnas.latency", "tfnas.train", "tfnas.export", "tfnas.data", "tfnas.utils", "tfnas.config")


def test_infrastructure_knows_no_family_and_families_not_each_other():
    """The layout's rule (README, Layout): shared code is handed a family's knowledge, never imports it."""
    wrong = []
    for m, deps in _module_graph().items():
        pkg = _package_of(m)
        if m.startswith("tfnas_base"):  # the base layer imports only itself
            wrong += [f"{m} -> {d}" for d in deps if not d.startswith("tfnas_base")]
        if m.startswith("profilers"):  # the device side: no tfnas
            wrong += [f"{m} -> {d}" for d in deps if d == "tfnas" or d.startswith("tfnas.")]
        if pkg in INFRASTRUCTURE or m in ("tfnas.errors", "tfnas.registry", "tfnas.resources"):
            wrong += [f"{m} -> {d}" for d in deps if _package_of(d) in FAMILIES]
        if pkg in FAMILIES:
            wrong += [f"{m} -> {d}" for d in deps if _package_of(d) in FAMILIES and _package_of(d) != pkg]
    assert not wrong, "imports against the layout:\n  " + "\n  ".join(sorted(wrong))


def test_no_import_cycle_counting_imports_inside_functions():
    graph = _module_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not any(
        d == "tfnas" or d.startswith("tfnas.") for m, deps in graph.items() if m.startswith("profilers") for d in deps
    )


def test_spaces_and_genotypes_load_without_torch(tmp_path):
    """Reading a space or a genotype is plain data: a process where `import torch` fails can do it."""
    g = tmp_path / "g.json"
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
from tfnas.mbv2.space import load_space
from tfnas.darts.space import PUBLISHED, load_cell_space, load_genotype
PUBLISHED["DARTS_V2"].save({str(g)!r})
assert load_genotype({str(g)!r}) == PUBLISHED["DARTS_V2"]
print(load_space("tfnas_imagenet").num_layers(), load_cell_space("s3").num_ops)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["18", "3"]


def test_imagenet_darts_setting_trains_the_mobile_network(tmp_path):
    """`setting: imagenet` trains C=48, 14 cells, no drop path: DARTS_V2 has 4,718,752 parameters there (1000
    classes, no auxiliary head); this run's generated data has 10 classes, 990 x (768 + 1) fewer."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "setting: imagenet\ndata: {resolution: 32, num_samples: 16, batch_size: 4}\n"
        "train: {epochs: 1, max_steps_per_epoch: 1}\n"
    )
    out = tmp_path / "run"
    assert main(["darts", "train", "--genotype", "DARTS_V2", "--config", str(cfg), "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    net = report["config"]["net"]
    assert (net["C"], net["num_cells"], net["drop_path_prob"], net["stem"]) == (48, 14, 0.0, "imagenet")
    assert report["params_without_aux"] == 4_718_752 - 990 * (768 + 1)
    assert report["config"]["train"]["epochs"] == 1 and report["config"]["train"]["label_smoothing"] == 0.1


# ---- inputs that ended in a traceback ---------------------------------------------------------------------------
def test_darts_bundle_profile_error_is_clean(tmp_path, capsys):
    code = main(["darts", "bundle", "--deploy", "C=4,num_cells=3,resolution=8", "--out", str(tmp_path / "b"),
                 "--profile", str(tmp_path / "t.json"), "--threads", "0"])  # fmt: skip
    assert code == 2
    assert "threads" in capsys.readouterr().err


def test_deploy_shape_is_checked_like_a_config(tmp_path, capsys):
    assert main(["darts", "bundle", "--deploy", "num_cells=0", "--out", str(tmp_path / "b")]) == 2
    assert "--deploy: key 'num_cells' = 0: expected a number >= 3" in capsys.readouterr().err
    assert main(["darts", "bundle", "--deploy", "cells=4", "--out", str(tmp_path / "b")]) == 2
    assert "unknown key 'cells'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"normal": [{"edges": [["sep_conv_3x3", "a"]]}], "reduce": []}, r"normal\[0\].edges"),
        ({"normal": [{"edges": [["sep_conv_3x3"]] * 8}], "reduce": []}, r"normal\[0\].edges"),
        ({"normal": 3, "reduce": []}, r"'normal'"),
        ({"reduce": []}, r"missing key 'normal'"),
        ({"normal": [{"edges": [["sep_conv_9x9", 0], ["skip_connect", 1]] * 4}], "reduce": []}, "did you mean"),
    ],
)
def test_malformed_genotype_json_is_a_clean_error(tmp_path, capsys, doc, expected):
    import re

    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    assert main(["darts", "eval", "--genotype", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and re.search(expected, err), err


# ---- inputs that slipped through --------------------------------------------------------------------------------
def test_duplicate_keys_are_errors_in_tables_and_configs(tmp_path, tiny_space):
    from tests.test_search_tfnas import synthetic_table
    from tfnas.mbv2.search.config import load_config
    from tfnas_base.errors import UserError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("target_ms: 5\nsearch: {epochs: 3}\ntarget_ms: 7\n")
    with pytest.raises(UserError, match=r"c.yaml.*'target_ms' appears twice.*line 1"):
        load_config(cfg)
    lut = tmp_path / "t.json"
    synthetic_table(tiny_space).save(lut)
    text = lut.read_text()
    first = text.index('"entries": {') + len('"entries": {')
    end = text.index("}", text.index("}", first) + 1) + 1  # the first entry: key and its object
    entry = text[first:end].strip()
    lut.write_text(text[:first] + entry + "," + text[first:])
    with pytest.raises(UserError, match=r"t.json.*appears twice"):
        from profilers.lut import LatencyTable

        LatencyTable.load(lut)


def test_a_huge_config_is_refused_before_parsing(tmp_path, monkeypatch):
    import tfnas.utils.io as io_mod
    from tfnas.errors import ConfigError
    from tfnas.mbv2.search.config import load_config

    path = tmp_path / "big.yaml"
    with open(path, "w") as f:
        f.write("a: [" + "1, " * 10_000_000 + "1]\n")  # ~30 MB
    parsed = []
    monkeypatch.setattr(io_mod.yaml, "load", lambda *a, **k: parsed.append(1))
    with pytest.raises(ConfigError, match=r"big.yaml is 28.6 MB; a YAML file tfnas reads is at most 4 MB.*unread"):
        load_config(path)
    assert not parsed  # refused by its size, never handed to the parser (minutes for 30 MB)


def test_random_bytes_checkpoint_says_what_it_is(tmp_path):
    from tfnas.errors import TfnasError
    from tfnas.utils.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(TfnasError, match=r"last.pt is not a torch checkpoint \(it is a binary file\); it is corrupted"):
        load_checkpoint(path)


def _hold(lock_file: Path) -> subprocess.Popen:
    """Another process that holds ``lock_file`` (as a running search or profile would) until killed."""
    code = (
        "import sys, time; from tfnas_base import lock; lock.acquire(sys.argv[1], 'x'); print('held', flush=True);"
        " time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_search_into_the_same_folder_is_refused(tmp_path, tiny_space, capsys):
    from tests.test_search_tfnas import tiny_config

    cfg = tiny_config(tmp_path, tiny_space, epochs=2, warmup_epochs=1)
    cfg["target_ms"] = 1.0
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "out"}))
    out = tmp_path / "run"
    out.mkdir()
    other = _hold(out / ".tfnas-lock")
    try:
        assert main(["search", "--config", str(path), "--out", str(out), "--no-progress"]) == 2
    finally:
        other.kill()
    err = capsys.readouterr().err
    assert f"run folder {out} is being written by another process (pid {other.pid}:" in err
    assert not (out / "checkpoints").exists()


def test_a_second_profile_into_the_same_table_is_refused(tmp_path, capsys):
    out = tmp_path / "t.json"
    other = _hold(Path(str(out) + ".lock"))
    try:
        code = main(["profile", "--space", "tfnas_cifar", "--out", str(out), "--quiet", "--grid", "dense"])
    finally:
        other.kill()
    assert code == 2
    assert f"latency table {out} is being written by another process (pid {other.pid}:" in capsys.readouterr().err
    assert not out.exists()


def test_registries_suggest_the_name_meant():
    from tfnas.darts.ops import build_op
    from tfnas.errors import ConfigError
    from tfnas.mbv2.search.steps import weight_paths

    with pytest.raises(
        ConfigError, match=r"unknown DARTS op 'sep_conv3x3' \(choose from .*\); did you mean 'sep_conv_3x3'"
    ):
        build_op("sep_conv3x3", 4, 1)
    with pytest.raises(ConfigError, match=r"unknown sampling scheme 'gumbel_randm'.*did you mean 'gumbel_random'"):
        weight_paths("gumbel_randm")
    with pytest.raises(ConfigError, match=r"unknown path sampler 'gumbl'.*did you mean 'gumbel'"):
        weight_paths(["gumbl"])


def test_every_op_name_of_the_spaces_has_a_builder():
    from tfnas.darts.ops import OPS
    from tfnas.darts.space import OP_NAMES

    assert sorted(OPS) == sorted(OP_NAMES)


def test_commands_are_thin_and_functions_short():
    """Issue 23: a command parses, calls the library once and prints (<= 120 lines); no function in tfnas/
    over 60 lines (a longer one is several steps that deserve names and tests of their own)."""
    long_commands = [
        f"{p.name}: {n} lines"
        for p in sorted((ROOT / "tfnas" / "commands").glob("*.py"))
        if (n := len(p.read_text().splitlines())) > 120
    ]
    long_functions = []
    for p in sorted((ROOT / "tfnas").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long_commands and not long_functions, (long_commands, long_functions)
