"""Every benchmark harness still imports and parses its flags: a restructuring that moves a module the
recorded commands use fails here, not months later when someone reruns a result."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfnas.utils.io import repo_root

ROOT = repo_root()
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks").glob("*/*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_runs_its_help(script):
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
