"""TF-NAS: latency-constrained differentiable search over the MobileNetV2-style space.

Supernet (``supernet``, ``elastic_ops``), path samplers (``sampling``), the
latency term (``latency``), elastic width scaling (``elastic``), the loop
(``searcher``) and its report (``report``). Facts from Hu et al., ECCV 2020.
"""

from __future__ import annotations

from tfnas.search.tfnas.config import DEFAULTS, load_config, resolve_config
from tfnas.search.tfnas.latency import LatencyModel
from tfnas.search.tfnas.sampling import PATH_SAMPLERS, WEIGHT_SCHEMES
from tfnas.search.tfnas.searcher import SearchResult, TFNASSearch, check_target
from tfnas.search.tfnas.supernet import TFNASSupernet

__all__ = [
    "DEFAULTS",
    "PATH_SAMPLERS",
    "WEIGHT_SCHEMES",
    "LatencyModel",
    "SearchResult",
    "TFNASSearch",
    "TFNASSupernet",
    "check_target",
    "load_config",
    "resolve_config",
]
