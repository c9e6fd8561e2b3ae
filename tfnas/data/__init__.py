"""Datasets (synthetic, CIFAR-10, ImageFolder), the train/held-out split and seeded loaders."""

from __future__ import annotations

from tfnas.data.build import (
    DataBundle,
    SeededRandomSampler,
    build_datasets,
    evaluation_loader,
    is_builtin_source,
    make_loader,
    set_loader_epoch,
    split_train_held_out,
)
from tfnas.data.cifar import Cifar10Folder, restricted_pickle_load
from tfnas.data.folder import ImageFolderDataset
from tfnas.data.generated import GeneratedImages

__all__ = [
    "Cifar10Folder",
    "DataBundle",
    "GeneratedImages",
    "ImageFolderDataset",
    "SeededRandomSampler",
    "build_datasets",
    "evaluation_loader",
    "is_builtin_source",
    "make_loader",
    "restricted_pickle_load",
    "set_loader_epoch",
    "split_train_held_out",
]
