"""TF-NAS: latency-constrained differentiable search over the MobileNetV2-style space.

Config (``config``), supernet (``supernet``, ``elastic_ops``), path samplers (``sampling``), the
latency term (``latency``), elastic width scaling (``elastic``), the loop (``searcher``), its
report (``report``) and the whole run as the CLI does it (``run``). Facts from Hu et al., ECCV 2020.
"""

from __future__ import annotations

from tfnas.mbv2.search.config import DEFAULTS, TfnasSearchConfig, load_config, resolve_config
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.run import SearchOutcome, run_search
from tfnas.mbv2.search.sampling import PATH_SAMPLERS, WEIGHT_SCHEMES
from tfnas.mbv2.search.searcher import SearchResult, TFNASSearch, check_target
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
