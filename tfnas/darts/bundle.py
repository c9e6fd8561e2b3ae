"""``make_darts_bundle``: the profiling bundle of a cell space's ops at a deployment shape, optionally profiled here.

A DARTS latency table is built from this bundle: every op at every deployed edge and the fixed parts, exported
as ONNX graphs with a manifest (``tfnas.darts.latency.write_darts_bundle``), then timed by the profilers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from profilers.run import profile_bundle
from profilers.timing import PROFILE_PROTOCOL
from tfnas.darts.latency import write_darts_bundle
from tfnas.darts.shapes import DeployShape, parse_deploy
from tfnas.darts.space import load_cell_space
from tfnas.utils.io import read_json

Say = Callable[[str], None]


def make_darts_bundle(
    space: str,
    deploy: str | DeployShape,
    out: str | Path,
    profile: str | Path | None = None,
    threads: int = 1,
    say: Say = print,
) -> Path:
    """Write the bundle of ``space`` at ``deploy`` (a ``DeployShape`` or ``"C=36,num_cells=20,..."``) into ``out``;
    with ``profile``, time it here with ONNX Runtime (``threads``) into that latency table. Returns the bundle."""
    shape = deploy if isinstance(deploy, DeployShape) else parse_deploy(deploy)
    folder = write_darts_bundle(load_cell_space(space), shape, out)
    n = len(read_json(folder / "manifest.json", "bundle manifest")["entries"])
    say(f"bundle: {folder} ({n} graphs, deploy {shape})")
    if profile:
        table = profile_bundle(folder, profile, backend="ort", threads=threads, protocol=PROFILE_PROTOCOL)
        say(f"latency table: {profile} ({len(table)} keys)")
    return folder
