"""The package works when installed from a wheel, not only from a checkout.

Fast tests: the package list in ``pyproject.toml`` matches the tree, and shipped files resolve by name and by
checkout-relative path (from the checkout). Slow tests (``-m slow``, run by ``.ci/run``): build the wheel, install
it into fresh virtual environments and use it from another directory, with torch (``tfnas``) and without
(``python -m profilers``).

The fresh environments do not download or reinstall the heavy dependencies: the wheel goes in with
``--no-deps`` into an empty venv (made with ``--without-pip``, installed by this interpreter's pip through
``pip --python``), and a ``.pth`` file then appends this environment's site-packages to the venv's path. Only
plain path lines are read from a ``.pth`` in a site dir, and ``.pth`` files inside the appended folder are not
processed, so an editable install of the checkout there stays inert: ``tfnas`` comes from the wheel, the
dependencies (torch, numpy, onnxruntime, ...) from here. The checks assert where ``tfnas`` was imported from.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tfnas import __version__
from tfnas.errors import ConfigError, LatencyTableError

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "tfnas", "tfnas_base", "profilers", "configs", "latency_tables")
CIFAR_TABLE = "tfnas_cifar-ort-cpu-avx512-1t-b1-32"


# ---- fast: from the checkout ---------------------------------------------------------------------------------


def _code_packages(top: str) -> set[str]:
    found = set()
    for d in [ROOT / top, *(ROOT / top).rglob("*")]:
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")):
            found.add(".".join(d.relative_to(ROOT).parts))
    return found


def test_pyproject_lists_every_code_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    code = _code_packages("tfnas") | _code_packages("tfnas_base") | _code_packages("profilers")
    assert code - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    shipped = {p for p in listed if p.startswith("tfnas._shipped.")}
    assert listed - code == shipped
    assert {cfg["package-dir"][p] for p in shipped} == {"configs", "latency_tables"}
    assert cfg["dynamic"]["version"] == {"attr": "tfnas.__version__"}
    assert "version" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_shipped_files_resolve_by_name_and_by_checkout_path(tmp_path, monkeypatch) -> None:
    from tfnas.resources import data_root, find_config, find_table, shipped_names

    assert Path(str(data_root())) == ROOT  # a checkout reads its own folders
    monkeypatch.chdir(tmp_path)  # names and checkout-relative paths work from anywhere
    table = ROOT / "latency_tables" / f"{CIFAR_TABLE}.json"
    assert find_table(CIFAR_TABLE) == table
    assert find_table(f"{CIFAR_TABLE}.json") == table
    assert find_table(f"latency_tables/{CIFAR_TABLE}.json") == table
    assert find_config("tfnas_cpu_demo", "search") == ROOT / "configs/search/tfnas_cpu_demo.yaml"
    assert find_config("configs/darts/darts_1st.yaml", "darts") == ROOT / "configs/darts/darts_1st.yaml"
    assert "tfnas_imagenet" in shipped_names("configs/spaces")

    own = tmp_path / "latency_tables" / f"{CIFAR_TABLE}.json"  # the user's own file wins over a shipped one
    own.parent.mkdir()
    own.write_text("{}")
    assert find_table(f"latency_tables/{CIFAR_TABLE}.json") == Path(f"latency_tables/{CIFAR_TABLE}.json")

    with pytest.raises(LatencyTableError, match=f"does not exist.*shipped in latency_tables/: .*{CIFAR_TABLE}"):
        find_table("no_such_table")
    with pytest.raises(ConfigError, match="search config 'nope' does not exist.*tfnas_cpu_demo"):
        find_config("nope", "search")
    with pytest.raises(ConfigError, match="darts config 'configs/darts/nope.yaml' does not exist.*darts_1st"):
        find_config("configs/darts/nope.yaml", "darts")


def test_every_table_a_shipped_search_config_names_is_shipped() -> None:
    from tfnas.resources import find_table, shipped_names
    from tfnas.utils.io import read_yaml

    checked = []
    for name in shipped_names("configs/search", (".yaml",)):
        lut = read_yaml(ROOT / "configs/search" / f"{name}.yaml")["lut"]
        if "trt" in lut or lut == "auto":  # a GPU table the user profiles; auto picks or profiles one
            continue
        path = find_table(lut)  # a missing one is an error naming it
        assert path.is_file() and path.parent.name in ("latency_tables", "_shipped", "tables"), path
        checked.append(name)
    assert "tfnas_gpu_paper" in checked  # the loop ran over the configs that name a table


# ---- slow: from a wheel, in fresh environments -----------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, timeout: float = 300, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _setuptools_builds_wheels() -> bool:
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1)  # bdist_wheel built in, no `wheel` package needed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the build inputs (no stale build/ of the checkout leaks in)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    for name in BUILD_INPUTS:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(item, src / name)
    extra = ["--no-build-isolation"] if _setuptools_builds_wheels() else []  # else an isolated build (downloads)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *extra, "-w", str(base / "dist"), str(src)], base)
    (whl,) = (base / "dist").glob("tfnas-*.whl")
    assert whl.name.startswith(f"tfnas-{__version__}-"), whl.name
    return whl


def _fresh_venv(where: Path, wheel: Path, block: tuple[str, ...] = ()) -> Path:
    """An empty venv with the wheel (no deps) that sees this environment's packages, minus ``block``."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(where)], where.parent)
    python = where / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], where.parent)
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], where).stdout.strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_host_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    if block:
        (site / "_block_imports.py").write_text(
            textwrap.dedent(
                f"""
                import sys

                class _Block:
                    BLOCKED = {block!r}

                    def find_spec(self, name, path=None, target=None):
                        if name.split(".")[0] in self.BLOCKED:
                            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not installed here)")
                        return None

                sys.meta_path.insert(0, _Block())
                """
            )
        )
        (site / "_block_imports.pth").write_text("import _block_imports\n")
    return python


@pytest.mark.slow
def test_wheel_installed_elsewhere_runs_space_predict_and_a_tiny_search(wheel, tmp_path) -> None:
    python = _fresh_venv(tmp_path / "venv", wheel)
    tfnas = str(python.parent / "tfnas")
    work = tmp_path / "elsewhere"
    work.mkdir()

    where = _run(
        [str(python), "-c", "import tfnas, importlib.metadata as m; print(tfnas.__file__, m.version('tfnas'))"], work
    )
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(tmp_path / "venv") and version == __version__

    out = _run([tfnas, "space", "tfnas_imagenet"], work).stdout
    assert "space tfnas_imagenet" in out and "_shipped" in out
    out = _run([tfnas, "space"], work).stdout
    assert "tfnas_cifar" in out and "tfnas_imagenet" in out
    bad = _run([tfnas, "space", "nope"], work, ok=False)
    assert bad.returncode == 2 and "available:" in bad.stderr and "tfnas_imagenet" in bad.stderr

    _run(
        [
            str(python),
            "-c",
            "import json; from tfnas.mbv2.arch import Architecture; from tfnas.mbv2.space import load_space;"
            "json.dump(Architecture.uniform(load_space('tfnas_cifar'), 'k3_e3').to_dict(), open('arch.json', 'w'))",
        ],
        work,
    )
    for lut in (CIFAR_TABLE, f"latency_tables/{CIFAR_TABLE}.json"):
        out = _run([tfnas, "predict", "--lut", lut, "arch.json"], work).stdout
        assert "predicted latency" in out
    bad = _run([tfnas, "predict", "--lut", "nope", "arch.json"], work, ok=False)
    assert bad.returncode == 2 and CIFAR_TABLE in bad.stderr

    # A user config naming the shipped space and table the way the shipped configs do.
    (work / "tiny.yaml").write_text(
        textwrap.dedent(
            f"""
            name: tiny
            space: tfnas_cifar
            lut: latency_tables/{CIFAR_TABLE}.json
            target_ms: 1.2
            data: {{source: generated, resolution: 16, num_samples: 32, held_out_fraction: 0.5}}
            search: {{epochs: 2, warmup_epochs: 1, batch_size: 4, steps_per_epoch: 2, arch_every: 1}}
            runtime: {{threads: 1, progress: false}}
            """
        )
    )
    out = _run([tfnas, "search", "--config", "tiny.yaml", "--out", "run"], work).stdout
    assert "predicted latency" in out and (work / "run" / "arch.json").exists()
    _run([tfnas, "predict", "--lut", CIFAR_TABLE, "run/arch.json"], work)

    # Shipped configs by name resolve (config, space and table); an infeasible target stops before training.
    cifar = ["--config", "tfnas_cifar_demo", "--lut", "tfnas_cifar-ort-cpu-avx512-1t-b1-32"]
    bad = _run([tfnas, "search", *cifar, "--target-ms", "1000", "--out", "x"], work, ok=False)
    assert bad.returncode == 2 and "infeasible for space 'tfnas_cifar'" in bad.stderr, bad.stderr
    bad = _run([tfnas, "darts", "search", "--config", "nope"], work, ok=False)
    assert bad.returncode == 2 and "darts_1st" in bad.stderr, bad.stderr
    out = _run([str(python), "-c", "from tfnas.darts.space import available_cell_spaces as a; print(a())"], work).stdout
    assert "'s0'" in out and "'s4'" in out


@pytest.mark.slow
def test_profilers_from_the_wheel_run_where_torch_cannot_be_imported(wheel, tmp_path) -> None:
    python = _fresh_venv(tmp_path / "venv", wheel, block=("torch", "torchvision", "timm"))
    work = tmp_path / "device"
    work.mkdir()
    bad = _run([str(python), "-c", "import torch"], work, ok=False)
    assert bad.returncode == 1 and "ModuleNotFoundError" in bad.stderr

    assert "run" in _run([str(python), "-m", "profilers", "--help"], work).stdout
    _run([str(python), "-c", "from profilers.demo import write_demo_bundle; write_demo_bundle('bundle')"], work)
    fast = ["--warmup", "1", "--min-repeats", "3", "--max-repeats", "5", "--max-time", "0.05", "--passes", "1"]
    _run(
        [
            str(python),
            "-m",
            "profilers",
            "run",
            "bundle",
            "--out",
            "lut.json",
            "--threads",
            "1",
            "--no-progress",
            *fast,
        ],
        work,
    )
    out = _run([str(python), "-m", "profilers", "info", "lut.json"], work).stdout
    assert "onnxruntime" in out
