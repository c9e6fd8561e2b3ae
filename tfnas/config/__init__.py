"""Config loading: the strict loader (``loader``) and the shared optimizer/schedule specs (``specs``).

Each config's schema lives beside the code that reads it: ``tfnas.search.config`` (TF-NAS
search), ``tfnas.darts.config`` (DARTS search and training), ``tfnas.spaces`` (spaces),
``tfnas.arch`` (derived architectures), ``tfnas.train.loop`` (``tfnas train``).
"""

from tfnas.config.loader import Schema, apply_overrides, format_errors, load_file, read_config, validate
from tfnas.config.specs import OptimizerSpec, ScheduleSpec

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
