"""TF-NAS: latency-constrained differentiable search over the MobileNetV2-style space.

Config (``config``), supernet (``supernet``; its searchable layers: ``layers``), the latency term
(``latency``), elastic width scaling (``elastic``). The search's parts, each usable alone: its latency model,
data, target check, step plan and data order from a config (``build``), the path samplers and the weight and
architecture steps (``steps``), derivation from the supernet's parameters and the report (``derive``), the
measured closed loop (``measured``); ``searcher.TFNASSearch`` runs them with
checkpoints and resume, and ``run`` is the whole run as the CLI does it. Facts from Hu et al., ECCV 2020.
"""

from __future__ import annotations

from tfnas.mbv2.search.build import check_target
from tfnas.mbv2.search.config import DEFAULTS, TfnasSearchConfig, load_config, resolve_config
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.run import SearchOutcome, run_search
from tfnas.mbv2.search.searcher import SearchResult, TFNASSearch
from tfnas.mbv2.search.steps import PATH_SAMPLERS, WEIGHT_SCHEMES
from tfnas.mbv2.search.supernet import TFNASSupernet

__all__ = [
    "DEFAULTS",
    "PATH_SAMPLERS",
    "WEIGHT_SCHEMES",
    "LatencyModel",
    "SearchOutcome",
    "SearchResult",
    "TFNASSearch",
    "TFNASSupernet",
    "TfnasSearchConfig",
    "check_target",
    "load_config",
    "resolve_config",
    "run_search",
]
