"""Search configuration: plain nested dicts (as read from YAML) over the reference defaults.

Defaults are the TF-NAS reference schedule (90 epochs, 10 warm-up, SGD 0.025
cosine, Adam 0.01 (0.5, 0.999) 5e-4, temperature 5.0 x 0.96 per epoch,
lambda 0.1, an architecture step every 2nd weight step); a config file only
states what differs. Unknown keys are errors that name the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tfnas.errors import ConfigError
from tfnas.utils.io import read_yaml

DEFAULTS: dict[str, Any] = {
    "name": "tfnas_search",
    "space": "tfnas_imagenet",
    "lut": None,  # path to a latency table (required)
    "lut_resolution": None,  # deployment resolution; default: the table's
    "calibrated": True,  # apply the table's calibration (scale, offset) to the latency term
    "target_ms": None,
    "seed": 0,
    "out": None,  # default: runs/search/<name>
    "data": {
        "source": "generated",  # 'generated', a CIFAR-10 folder or an ImageFolder tree
        "resolution": 64,  # proxy training resolution (independent of lut_resolution)
        "num_classes": None,
        "num_samples": 2000,  # generated data only
        "max_samples": None,  # cap on real training data
        "held_out_fraction": 0.5,  # the architecture steps' split
        "workers": 0,
    },
    "search": {
        "epochs": 90,
        "warmup_epochs": 10,  # weights only, single Gumbel path
        "batch_size": 32,
        "steps_per_epoch": None,  # None: one pass over the training split
        "arch_every": 2,  # an architecture step every k-th weight step
        "sampling": "gumbel_random",  # weight-step scheme (see sampling.WEIGHT_SCHEMES) or a list
        "ops": None,  # subset of the space's ops to search (None: all)
        "temperature": 5.0,
        "temperature_decay": 0.96,  # per epoch
        "latency_lambda": 0.1,
        "elastic": True,  # width scaling after each post-warm-up epoch
        "elastic_step": 0.1,  # relative width step of the scaling
        "width_align": None,  # allowed widths are multiples of this (None: the table's alignment)
        "final_tolerance": 0.003,  # derived predicted latency within this fraction of the target
        "measure_final": False,  # measure the derived net end to end and re-aim until it hits the target
        "measure_tolerance": 0.02,
        "measure_iterations": 3,
        "measure_rounds": 7,  # a measurement is the median of this many timings
    },
    "optim": {
        "weights": {"name": "sgd", "lr": 0.025, "momentum": 0.9, "weight_decay": 1.0e-5},
        "schedule": {"name": "cosine", "min_lr": 0.0},
        "grad_clip": 5.0,
        "arch": {"name": "adam", "lr": 0.01, "betas": [0.5, 0.999], "weight_decay": 5.0e-4},
    },
    "runtime": {
        "threads": None,  # torch intra-op threads (None: leave torch's default)
        "channels_last": True,
        "mixed_op": "loop",  # loop (op by op, fastest on CPU) | fused (shared expansion/depthwise convs)
        "autocast": None,  # None (fp32) | bf16: forward passes under torch.autocast (CPUs with AVX512-BF16/AMX, GPUs)
        "checkpoint_every_steps": 0,  # 0: checkpoint at epoch ends only
        "progress": None,  # tqdm bars (None: when stderr is a terminal)
        "device": "auto",  # auto | cpu | cuda
        "stop_after_steps": None,  # testing aid: stop (as if interrupted) after this many weight steps
    },
}

# sub-dicts whose content is free-form (passed to builders), not checked key by key
_FREE = {("optim", "weights"), ("optim", "schedule"), ("optim", "arch")}


AUTOCAST_DTYPES = {None: None, "bf16": "bfloat16", "fp16": "float16"}


def _merge(base: dict, over: dict, path: tuple[str, ...], source: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        where = ".".join((*path, k))
        if k not in base:
            raise ConfigError(f"{source}: unknown key '{where}' (allowed: {', '.join(base)})")
        if isinstance(base[k], dict) and (*path, k) not in _FREE:
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: key '{where}' must be a mapping, got {v!r}")
            out[k] = _merge(base[k], v, (*path, k), source)
        elif isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: key '{where}' must be a mapping, got {v!r}")
            out[k] = copy.deepcopy(v)
        else:
            out[k] = v
    return out


def resolve_config(data: dict[str, Any] | None, source: str = "<config>") -> dict[str, Any]:
    """Defaults overlaid with ``data``; checks the values a run cannot start without."""
    cfg = _merge(DEFAULTS, data or {}, (), source)
    s = cfg["search"]
    for key in ("epochs", "batch_size", "arch_every"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ConfigError(f"{source}: search.{key} = {s[key]!r}: expected an integer >= 1")
    if not isinstance(s["warmup_epochs"], int) or not 0 <= s["warmup_epochs"] <= s["epochs"]:
        raise ConfigError(f"{source}: search.warmup_epochs = {s['warmup_epochs']!r}: expected 0..epochs")
    if s["temperature"] <= 0 or s["temperature_decay"] <= 0:
        raise ConfigError(f"{source}: search.temperature and temperature_decay must be > 0")
    if not 0 < s["final_tolerance"] < 0.5:
        raise ConfigError(f"{source}: search.final_tolerance = {s['final_tolerance']!r}: expected a small fraction")
    if cfg["runtime"]["autocast"] not in AUTOCAST_DTYPES:
        raise ConfigError(
            f"{source}: runtime.autocast = {cfg['runtime']['autocast']!r}: expected one of"
            f" {', '.join(map(str, AUTOCAST_DTYPES))}"
        )
    if cfg["target_ms"] is not None and (not isinstance(cfg["target_ms"], (int, float)) or cfg["target_ms"] <= 0):
        raise ConfigError(f"{source}: target_ms = {cfg['target_ms']!r}: expected a positive number of ms")
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    data = read_yaml(path, "search config")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"search config {path}: expected a mapping at the top level")
    return resolve_config(data, str(path))
