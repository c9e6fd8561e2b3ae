"""``profilers`` must import and profile with torch and tfnas impossible to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent(
    """
    import sys

    class Block:
        BLOCKED = ("torch", "tfnas", "torchvision", "timm")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"blocked import of {name} (profilers must not need it)")
            return None

    sys.meta_path.insert(0, Block())
    for mod in list(sys.modules):
        if mod.split(".")[0] in Block.BLOCKED:
            del sys.modules[mod]
    """
)

SCRIPT = BLOCK + textwrap.dedent(
    """
    import profilers
    from profilers import TimingProtocol, profile_bundle, LatencyTable
    from profilers.demo import write_demo_bundle
    from profilers.cli import main
    import profilers.backends.tensorrt

    tmp = sys.argv[1]
    bundle = write_demo_bundle(tmp + "/bundle")
    proto = TimingProtocol(warmup=1, min_repeats=3, max_repeats=5, floor_repeats=2, max_time_s=0.05,
                           remeasure_attempts=0, passes=1)
    table = profile_bundle(bundle, tmp + "/lut.json", protocol=proto, progress=False)
    assert table.complete and table.n_points() == 7
    assert main(["info", tmp + "/lut.json"]) == 0
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in Block.BLOCKED)
    assert not leaked, leaked
    print("OK-NO-TORCH")
    """
)


def test_profilers_import_and_run_without_torch_or_tfnas(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK-NO-TORCH" in proc.stdout


def _blocked(code: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_profilers_cli_runs_a_bundle_without_torch_or_tfnas(tmp_path: Path) -> None:
    """``python -m profilers`` as a device runs it: the CLI, not only the API, needs neither torch nor tfnas."""
    cli = (
        "import runpy\nsys.argv[0] = 'profilers'\nrunpy.run_module('profilers', run_name='__main__', alter_sys=True)\n"
    )
    proc = _blocked(cli, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "run" in proc.stdout, proc.stderr
    proc = _blocked("from profilers.demo import write_demo_bundle\nwrite_demo_bundle(sys.argv[1])\n", "b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fast = ["--warmup", "1", "--min-repeats", "3", "--max-repeats", "5", "--max-time", "0.05", "--passes", "1"]
    proc = _blocked(cli, "run", "b", "--out", "lut.json", "--threads", "1", "--no-progress", *fast, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _blocked(cli, "info", "lut.json", cwd=tmp_path)
    assert proc.returncode == 0 and "onnxruntime" in proc.stdout, proc.stdout + proc.stderr


def test_profilers_sources_do_not_mention_torch_or_tfnas_imports() -> None:
    bad = []
    for path in (ROOT / "profilers").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(
                s.split()[1].split(".")[0] == mod for mod in ("torch", "tfnas")
            ):
                bad.append(f"{path.name}:{n}: {s}")
    assert not bad, bad
