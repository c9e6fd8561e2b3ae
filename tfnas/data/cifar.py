"""CIFAR-10 reader for the binary and the python (pickled) distribution formats.

The python format is a pickle, and the files come from users, so it is read
with a restricted unpickler that only resolves the few numpy functions and
classes an ndarray needs; anything else (``os.system``, ``builtins.eval`` ...)
is refused with a ``ConfigError``.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tfnas.data.transforms import CIFAR10_MEAN, CIFAR10_STD, normalize, random_crop_flip, resize
from tfnas.errors import ConfigError

BIN_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
BIN_TEST = ["test_batch.bin"]
PY_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
PY_TEST = ["test_batch"]
# Sub-folders the official archives unpack to; looked for inside ``root`` too.
_SUBDIRS = ("", "cifar-10-batches-bin", "cifar-10-batches-py")
_RECORD = 1 + 3 * 32 * 32

# (module, name) pairs the restricted unpickler may resolve. ``numpy.core`` is
# the numpy<2 module path (original CIFAR files); it is mapped to ``numpy._core``.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by python 3 store bytes
}
# numpy.dtype subclasses (numpy>=1.25 pickles dtypes as e.g. numpy.dtypes.UInt8DType).
_ALLOWED_DTYPE_MODULE = "numpy.dtypes"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        canonical = module
        if module == "numpy.core" or module.startswith("numpy.core."):
            canonical = "numpy._core" + module[len("numpy.core") :]
        if (canonical, name) in _ALLOWED_GLOBALS:
            return getattr(importlib.import_module(canonical), name)
        if canonical == _ALLOWED_DTYPE_MODULE and name.endswith("DType"):
            obj = getattr(importlib.import_module(canonical), name, None)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                return obj
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def restricted_pickle_load(path: str | os.PathLike) -> Any:
    """Unpickle a CIFAR python-format batch without executing arbitrary code."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read CIFAR-10 file {path}: {e.strerror}") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise ConfigError(f"CIFAR-10 file {path} is not a plain CIFAR-10 batch: {e}") from None
    except Exception as e:  # truncated or garbage files raise many error types
        raise ConfigError(f"CIFAR-10 file {path} is not a valid pickle ({type(e).__name__}: {e})") from None


def find_cifar10_dir(root: str | os.PathLike) -> tuple[Path, str] | None:
    """Return ``(folder, "bin" | "py")`` holding CIFAR-10 training batches, or None."""
    root = Path(root)
    for sub in _SUBDIRS:
        folder = root / sub if sub else root
        if (folder / BIN_TRAIN[0]).is_file():
            return folder, "bin"
        if (folder / PY_TRAIN[0]).is_file():
            return folder, "py"
    return None


def _expected_files_message(root: Path) -> str:
    return (
        f"no CIFAR-10 data found in {root}: expected the binary format "
        f"({', '.join(BIN_TRAIN)}, {BIN_TEST[0]}) or the python format "
        f"({', '.join(PY_TRAIN)}, {PY_TEST[0]}), directly in that folder or in "
        f"cifar-10-batches-bin/ or cifar-10-batches-py/"
    )


def _read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ConfigError(
            f"CIFAR-10 binary file {path} has {raw.size} bytes, not a multiple of the "
            f"{_RECORD}-byte record (1 label byte + 3x32x32 pixels); it may be truncated"
        )
    raw = raw.reshape(-1, _RECORD)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def _read_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = restricted_pickle_load(path)
    if not isinstance(obj, dict):
        raise ConfigError(f"CIFAR-10 file {path} does not hold a dict of data and labels")
    # Original files were written by python 2, so keys load as bytes.
    entries = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = entries.get("data"), entries.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise ConfigError(f"CIFAR-10 file {path} lacks 'data' (ndarray) or 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ConfigError(f"CIFAR-10 file {path}: 'data' must be uint8 N x 3072, got {data.dtype} {data.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise ConfigError(f"CIFAR-10 file {path}: {labels.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


class Cifar10Folder(Dataset):
    """CIFAR-10 from a folder in the binary or python format (auto-detected).

    Items are ``(image, label)``: float32 ``3 x R x R`` normalised with the
    CIFAR-10 mean/std, resized bilinearly when ``resolution`` is not 32.
    ``augment`` adds pad-4 random crop and horizontal flip (training only).
    """

    num_classes = 10
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool,
        resolution: int | None = None,
        augment: bool = False,
    ) -> None:
        self.root = Path(root)
        found = find_cifar10_dir(self.root)
        if found is None:
            raise ConfigError(_expected_files_message(self.root))
        folder, fmt = found
        if fmt == "bin":
            names, reader = (BIN_TRAIN if train else BIN_TEST), _read_bin
        else:
            names, reader = (PY_TRAIN if train else PY_TEST), _read_py
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ConfigError(f"CIFAR-10 folder {folder} ({fmt} format) is missing {', '.join(missing)}")
        parts = [reader(folder / n) for n in names]
        self.data = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.min() < 0 or labels.max() >= 10:
            raise ConfigError(f"CIFAR-10 folder {folder}: labels outside 0..9")
        self.labels = labels
        self.folder = folder
        self.format = fmt
        self.train = train
        self.resolution = 32 if resolution is None else int(resolution)
        self.augment = augment

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.data[index].astype(np.float32) / 255.0)
        if self.augment:
            img = random_crop_flip(img)
        img = resize(img, self.resolution)
        return normalize(img, CIFAR10_MEAN, CIFAR10_STD), int(self.labels[index])
