"""A whole TF-NAS search as the CLI runs it: provide the table, search, derive, measure here.

Two library steps, called in turn by ``tfnas search``: ``provide_table`` settles ``lut: auto`` (a shipped
or cached table of this machine that passes a quick validation, else one profiled and calibrated now), and
``run_search`` runs the search in ``cfg.out`` (torchrun: one process per GPU) and, when this machine is the
table's device, times the derived network and writes ``measured.json`` beside ``arch.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.lut import LatencyTable
from tfnas.errors import ConfigError
from tfnas.latency.measure import measure_on_table_device
from tfnas.latency.table import device_match, table_device
from tfnas.mbv2.measure import ArchNetwork
from tfnas.mbv2.search.config import TfnasSearchConfig
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.searcher import SearchResult, TFNASSearch
from tfnas.mbv2.select import choose_table
from tfnas.mbv2.space import load_space
from tfnas.train.common import claim_run_dir
from tfnas.utils.distributed import cleanup, init_distributed
from tfnas.utils.io import read_json
from tfnas_base.atomic import atomic_write_json

Say = Callable[[str], None]


@dataclass
class SearchOutcome:
    result: SearchResult | None  # None off rank 0 of a multi-process run
    config: TfnasSearchConfig
    shape: str  # what the budget refers to: deployment shape and device
    device: str  # the table's device
    measured: dict[str, Any] | None = None  # measured.json, when this machine is the table's device


def with_out(cfg: TfnasSearchConfig) -> TfnasSearchConfig:
    """The config with its run folder (default ``runs/search/<name>``)."""
    if cfg.out is None:
        return cfg.model_copy(update={"out": str(Path("runs") / "search" / cfg.name)})
    return cfg


def provide_table(cfg: TfnasSearchConfig, resume: bool = False, say: Say = print) -> TfnasSearchConfig:
    """``lut: auto``: the config with a table of this machine at the config's ``precision`` (fp32 unless it
    says int8; shipped, cached, or profiled now); any other ``lut`` is kept. A resumed run keeps the table it
    started with (its saved ``config.json``): the automatic choice may pick another file once the host has
    drifted. The config comes back with its run folder set (``with_out``)."""
    cfg = with_out(cfg)
    if str(cfg.lut) != "auto":
        return cfg
    saved = Path(cfg.out or "") / "config.json"
    if resume and cfg.out and saved.exists():
        started = read_json(saved, "saved run config").get("lut")
        if started and started != "auto" and Path(started).exists():
            say(f"latency table: {started} (the one this run started with)")
            return cfg.model_copy(update={"lut": str(started)})
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("lut: auto profiles this machine; in a multi-process run name the table (lut: PATH)")
    space = load_space(cfg.space)
    precision = cfg.precision or "fp32"
    choice = choose_table(
        space, cfg.lut_resolution or space.resolution, progress=cfg.runtime.progress is not False, say=say,
        precision=precision,
    )  # fmt: skip
    say(f"latency table: {choice.path} ({choice.note})")
    return cfg.model_copy(update={"lut": str(choice.path)})


def deployment_shape(lat: LatencyModel) -> str:
    """What a latency budget refers to: the table's input shape and the device it was measured on."""
    table = lat.lookup.table
    match = device_match(table)
    here = "this machine" if match.same_device else "NOT this machine" if match.verifiable else "unverified device"
    return f"{lat.resolution}x{lat.resolution} on {table_device(table)} ({here}; table {table.source})"


def measure_result(result: SearchResult, table: LatencyTable, rounds: int, measurements: int) -> dict[str, Any] | None:
    """Time the derived network here when this machine is the table's device (an int8 table's network quantized
    as the table's graphs were), ``measurements`` times in fresh processes (not the one that trained), pooled
    as the closed loop pools its figures; write ``measured.json``."""
    net = ArchNetwork(result.arch)
    m = measure_on_table_device(net, table, rounds, fresh_process=True, measurements=measurements)
    if m is None:
        return None
    doc = {"target_ms": result.target_ms, "predicted_ms": result.predicted_ms, "device": table_device(table), **m}
    atomic_write_json(result.arch_path.parent / "measured.json", doc)
    return doc


def run_search(
    cfg: TfnasSearchConfig, resume: bool = False, force: bool = False, say: Say = print, measure: bool = True
) -> SearchOutcome:
    """Search under ``cfg`` into ``cfg.out`` (default ``runs/search/<name>``) and, with ``measure`` and when this
    machine is the table's device, time the result here. ``lut: auto`` must have been settled by
    ``provide_table`` first."""
    cfg = with_out(cfg)
    if str(cfg.lut) == "auto":
        raise ConfigError("lut: auto: settle it with provide_table(cfg) before run_search (tfnas search does)")
    device = cfg.runtime.device
    info = init_distributed(None if device == "auto" else device)
    try:
        if info.is_main:
            claim_run_dir(cfg.out, resume, force)
        search = TFNASSearch(cfg, cfg.out, resume=resume, dist_info=info)
        shape = deployment_shape(search.lat)
        if info.is_main:
            say(f"search: target {search.target:g} ms at {shape} -> {cfg.out}")
        result = search.run()
    finally:
        cleanup(info)
    table = search.lat.lookup.table
    if not info.is_main:
        return SearchOutcome(None, cfg, shape, table_device(table))
    s = cfg.search
    measured = measure_result(result, table, s.measure_rounds, s.measure_pool) if measure else None
    return SearchOutcome(result, cfg, shape, table_device(table), measured)


def explain_loop(report_path: str | Path) -> str:
    """Why the prediction may sit off the target after the closed loop (``search.measure_final``); '' if it did not re-aim."""
    loop = [row for row in read_json(report_path, "search report").get("measured_loop", []) if "iteration" in row]
    if not loop or loop[0].get("measured_ms") is None:
        return (
            "closed loop: the first measurement got no clean rounds (unsteady host); the table's choice stands"
            if loop
            else ""
        )
    if len(loop) < 2:
        return ""
    ratio = loop[0]["measured_ms"] / loop[0]["predicted_ms"]
    return (
        f"closed loop: the first derived net measured {ratio:.3f}x its prediction on this machine (drift-cancelled;"
        f" the ops a search favours, or the host's speed since the table's reference was recorded), so the widths"
        f" were re-aimed {len(loop) - 1} time(s) until the target lay within the tolerance or the measurement's"
        " uncertainty"
    )
