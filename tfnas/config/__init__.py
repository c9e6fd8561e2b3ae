"""Config loading (``loader``): the strict loader and the optimizer/schedule specs every trainer shares.

Each config's schema lives beside the code that reads it: ``tfnas.mbv2.search.config`` (TF-NAS
search), ``tfnas.darts.config`` (DARTS search and training), ``tfnas.mbv2.space`` and ``tfnas.darts.space`` (spaces),
``tfnas.mbv2.arch`` (derived architectures), ``tfnas.mbv2.train`` (``tfnas train``).
"""

from tfnas.config.loader import (
    OptimizerSpec,
    ScheduleSpec,
    Schema,
    apply_overrides,
    format_errors,
    load_file,
    read_config,
    validate,
)

__all__ = [
    "OptimizerSpec",
    "ScheduleSpec",
    "Schema",
    "apply_overrides",
    "format_errors",
    "load_file",
    "read_config",
    "validate",
]
