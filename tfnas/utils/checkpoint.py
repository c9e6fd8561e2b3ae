"""Atomic checkpoints that load with ``weights_only=True``, plus RNG state capture.

Checkpoints hold only tensors and plain containers/numbers/strings, so loading
never unpickles arbitrary objects. RNG states are converted to that form too,
which makes a resumed run draw the same random numbers as an uninterrupted one.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tfnas.errors import TfnasError
from tfnas.utils.io import binary_kind
from tfnas_base.atomic import atomic_write_bytes


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with torch.save to a temp file and rename it over ``path``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` (``weights_only=True``).

    Raises ``TfnasError`` naming the file when it is missing, truncated or
    corrupted, or holds objects other than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise TfnasError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        what = "it is empty" if not head else binary_kind(head) if not head.isascii() else "it is a text file"
        raise TfnasError(
            f"checkpoint {path} is not a torch checkpoint ({what}); it is corrupted or another kind of file"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights_only" in msg or "Weights only" in msg:
            raise TfnasError(
                f"checkpoint {path} holds objects other than tensors and plain data, which are not loaded "
                f"for safety ({msg.splitlines()[0]})"
            ) from None
        raise TfnasError(f"checkpoint {path} is corrupted or not a torch checkpoint: {msg}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise TfnasError(
            f"checkpoint {path} cannot be read; it may be truncated or corrupted ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(state, dict):
        raise TfnasError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def capture_rng_state() -> dict:
    """RNG states of python ``random``, numpy's global RNG and torch (CPU, all CUDA devices)."""
    version, internal, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state``; CUDA states are restored for the devices present."""
    try:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        n = state["numpy"]
        keys = n["keys"].numpy() if isinstance(n["keys"], torch.Tensor) else np.asarray(n["keys"])
        np.random.set_state((n["name"], keys.astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
        torch.set_rng_state(state["torch"].cpu())
    except (KeyError, TypeError, ValueError) as e:
        raise TfnasError(f"checkpoint RNG state is malformed: {type(e).__name__}: {e}") from None
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n_dev = torch.cuda.device_count()
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda[:n_dev]])


def load_weights_state(path: str | os.PathLike) -> dict:
    """The model state dict in ``model.pt`` (``{"model": ...}``), a run's ``checkpoints/last.pt``
    (``{"state": {"model": ...}}``) or a bare state dict."""
    state = load_checkpoint(path)
    if isinstance(state.get("state"), dict) and "model" in state["state"]:
        state = state["state"]["model"]
    elif isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def classifier_classes(state: dict) -> int | None:
    """How many classes the weights were trained for (rows of the last ``classifier.weight``), if any."""
    keys = [k for k in state if k.endswith("classifier.weight") and hasattr(state[k], "shape")]
    return int(state[keys[-1]].shape[0]) if keys else None


def load_state_checked(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)`` with a ``TfnasError`` naming the file and a few mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if shapes and not missing and not unexpected and all("classifier" in k for k in shapes):
        theirs, ours = classifier_classes(state), classifier_classes(own)
        raise TfnasError(
            f"weights in {path} were trained for {theirs} classes, but this model has {ours};"
            f" build it with {theirs} classes (tfnas export: --num-classes {theirs})"
        )
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})")
        raise TfnasError(f"weights in {path} do not fit this model: {'; '.join(parts)}; is it another architecture?")
    model.load_state_dict(state)
