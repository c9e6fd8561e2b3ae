"""``run_darts_search``: one DARTS-family search run from a config to its genotype, as the CLI and a script run it.

The run claims its folder first (``claim_run_dir``: the one place every run folder is claimed), then builds the
search (data, supernet, method, latency term), says what it is about to do, and runs (or resumes) it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfnas.config import apply_overrides
from tfnas.darts.config import DartsSearchConfig, load_search_config, resolve_search_config
from tfnas.darts.search import DartsResult, DartsSearch
from tfnas.errors import ConfigError
from tfnas.latency.table import table_device
from tfnas.resources import find_config
from tfnas.train.common import claim_run_dir

Say = Callable[[str], None]


@dataclass
class DartsSearchOutcome:
    """A finished search: its result (genotype, epochs, timings), wall time and the latency budget line."""

    result: DartsResult
    out_dir: Path
    seconds: float
    budget: str  # the deployment shape and device of a latency-aware search's budget ('' without one)

    @property
    def genotype_path(self) -> Path:
        return self.out_dir / "genotype.json"


def latency_budget(search: DartsSearch) -> str:
    """The deployment shape and device a latency-aware search's budget refers to ('' without one)."""
    lat = search.cfg.latency
    if lat is None:
        return ""
    reg = next(r for r in search.method.regularizers if r.name == "latency")
    return (
        f"latency budget {lat.target_ms:g} ms for the deployed net C={lat.deploy.C}, {lat.deploy.num_cells} cells,"
        f" {lat.deploy.resolution}x{lat.deploy.resolution}, batch {lat.deploy.batch}, on {table_device(reg.table)}"
        f" (table {reg.table.source})"
    )


def run_darts_search(
    config: str | Path | DartsSearchConfig | dict[str, Any],
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
    say: Say = print,
) -> DartsSearchOutcome:
    """Search under ``config`` (a YAML path, a shipped config's name, or a config) into ``out`` (default for a
    file: ``runs/darts/<its name>``). ``overrides``: dotted keys (``search.epochs``) validated with the config;
    ``resume``: continue the folder's last checkpoint; ``force``: write into a non-empty folder that is not a
    tfnas run; ``say`` gets the plan and the latency budget before the first step."""
    if isinstance(config, (str, Path)):
        cfg = load_search_config(find_config(config, "darts"), overrides)
        out = out or Path("runs") / "darts" / Path(config).stem
    elif isinstance(config, DartsSearchConfig):
        cfg = config if not overrides else resolve_search_config(apply_overrides(config.to_dict(), overrides))
    else:
        cfg = resolve_search_config(apply_overrides(config, overrides))
    if out is None:
        raise ConfigError("run_darts_search: give the run folder (out) of a config that is not a file")
    out = claim_run_dir(out, resume, force)
    t0 = time.time()
    search = DartsSearch(cfg, out)
    say(
        f"DARTS search: method {search.method.name}, space {search.model.space.name}, "
        f"{search.epochs} epochs x {search.steps_per_epoch} steps, data {search.data.source} -> {out}"
    )
    budget = latency_budget(search)
    if budget:
        say(budget)
    result = search.run(resume=resume)
    return DartsSearchOutcome(result, out, time.time() - t0, budget)
