"""Search configuration: the reference defaults overlaid with a YAML file, checked by a typed schema.

Defaults are the TF-NAS reference schedule (90 epochs, 10 warm-up, SGD 0.025
cosine, Adam 0.01 (0.5, 0.999) 5e-4, temperature 5.0 x 0.96 per epoch,
lambda 0.1, an architecture step every 2nd weight step); a config file only
states what differs. The schema (keys, types, ranges, defaults) is
``tfnas.config.schemas.TfnasSearchConfig``; errors name the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfnas.config import load_file, validate
from tfnas.config.schemas import TfnasSearchConfig

DEFAULTS: dict[str, Any] = validate(TfnasSearchConfig, {}, "<defaults>")

AUTOCAST_DTYPES = {None: None, "bf16": "bfloat16", "fp16": "float16"}


def resolve_config(data: dict[str, Any] | None, source: str = "<config>") -> dict[str, Any]:
    """Defaults overlaid with ``data``, every key, type and range checked (a ``ConfigError`` naming ``source``)."""
    return validate(TfnasSearchConfig, data, source)


def load_config(path: str | Path) -> dict[str, Any]:
    return load_file(path, TfnasSearchConfig, "search config")
