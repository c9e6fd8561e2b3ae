"""Dataset selection, the weights/architecture split, and reproducible loaders."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from tfnas.data.cifar import Cifar10Folder, find_cifar10_dir
from tfnas.data.folder import ImageFolderDataset, looks_like_image_folder
from tfnas.data.generated import GeneratedImages
from tfnas.data.tasks import Digits, ShapesTask
from tfnas.data.transforms import cutout
from tfnas.errors import ConfigError

AUGMENT = ("none", "train", "all")  # no augmentation | the weights' split only | every training split


def _generated(name: str, arg: str | None, num_samples: int, num_classes: int | None, resolution: int, seed: int):
    """(train, test, classes) of a built-in source; ``arg``: the part after ``name:`` (shapes: difficulty;
    digits: clutter)."""
    if name == "digits":
        try:
            clutter = 0.0 if arg is None else float(arg)
        except ValueError:
            raise ConfigError(f"data source 'digits:{arg}': the clutter must be a number in [0, 1]") from None
        return Digits(True, resolution, clutter), Digits(False, resolution, clutter), 10
    test_n = max(10, num_samples // 4)
    if name == "shapes":
        try:
            difficulty = 0.5 if arg is None else float(arg)
        except ValueError:
            raise ConfigError(f"data source 'shapes:{arg}': the difficulty must be a number in [0, 1]") from None
        return (ShapesTask(num_samples, resolution, seed, difficulty),
                ShapesTask(test_n, resolution, seed + 1_000_003, difficulty), ShapesTask.num_classes)  # fmt: skip
    k = 10 if num_classes is None else int(num_classes)
    if k < 2:
        raise ConfigError(f"num_classes must be >= 2 for generated data, got {k}")
    return GeneratedImages(num_samples, k, resolution, 3, seed), GeneratedImages(max(k, test_n), k, resolution, 3,
                                                                                 seed + 1_000_003), k  # fmt: skip


BUILTIN_SOURCES = ("generated", "shapes", "digits")  # shapes: a difficulty ("shapes:0.7"); digits: clutter


def is_builtin_source(source: object) -> bool:
    """``generated``, ``shapes[:difficulty]`` or ``digits``: data made or shipped by the code, no folder."""
    return str(source).split(":")[0] in BUILTIN_SOURCES


class _Cutout(Dataset):
    """A view of a dataset with DARTS's cutout (one random square of side ``length`` zeroed) on each image."""

    def __init__(self, base: Dataset, length: int):
        self.base, self.length = base, length

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[index]
        return cutout(x, self.length), y


@dataclass
class DataBundle:
    """Everything a search or training run needs to know about its data.

    ``train`` trains the weights, ``held_out`` (a disjoint, deterministic part
    of the training data, None when ``held_out_fraction`` is 0) drives the
    architecture steps of bilevel search, ``test`` (None when the source has no
    test split) reports final accuracy.
    """

    train: Dataset
    held_out: Dataset | None
    test: Dataset | None
    num_classes: int
    in_channels: int
    resolution: int
    source: str = ""


def split_train_held_out(dataset: Dataset, held_out_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Split ``dataset`` into (train, held_out) with a seeded permutation."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ConfigError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    n = len(dataset)  # type: ignore[arg-type]
    n_held = int(round(n * held_out_fraction))
    if held_out_fraction > 0 and (n_held == 0 or n_held == n):
        raise ConfigError(
            f"cannot split {n} samples with held_out_fraction={held_out_fraction}: "
            "one side would be empty; use more samples"
        )
    if n_held == 0:
        return dataset, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(perm[n_held:])), Subset(dataset, sorted(perm[:n_held]))


def _limit(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of at most ``max_samples`` items (for quick CPU runs)."""
    n = len(dataset)  # type: ignore[arg-type]
    if max_samples is None or max_samples >= n:
        return dataset
    if max_samples < 1:
        raise ConfigError(f"max_samples must be >= 1, got {max_samples}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(dataset, sorted(perm[:max_samples]))


def _check_classes(found: int, requested: int | None, where: str) -> int:
    if requested is not None and requested != found:
        raise ConfigError(f"{where} has {found} classes but num_classes={requested} was requested")
    return found


def _builtin_bundle(
    source: str | os.PathLike, resolution: int, num_classes: int | None, held_out_fraction: float, num_samples: int,
    seed: int, cutout_length: int,
) -> DataBundle:  # fmt: skip
    """A built-in source's bundle (``generated``, ``shapes[:difficulty]``, ``digits``)."""
    if num_samples < 2:
        raise ConfigError(f"num_samples must be >= 2, got {num_samples}")
    name, _, arg = str(source).partition(":")
    full, test, k = _generated(name, arg or None, num_samples, num_classes, resolution, seed)
    if name != "generated":
        _check_classes(k, num_classes, f"data source {name!r}")
    train, held = split_train_held_out(full, held_out_fraction, seed)
    return DataBundle(_Cutout(train, cutout_length) if cutout_length else train, held, test, k, 3, resolution,
                      str(source))  # fmt: skip


def _cifar_splits(
    root: Path, resolution: int, augment: str, num_classes: int | None
) -> tuple[Dataset, Dataset, Dataset | None, int]:
    """(train, train without augmentation, test or None, classes) of a CIFAR-10 folder."""
    train_full: Dataset = Cifar10Folder(root, train=True, resolution=resolution, augment=augment != "none")
    plain: Dataset = Cifar10Folder(root, train=True, resolution=resolution) if augment == "train" else train_full
    try:
        test = Cifar10Folder(root, train=False, resolution=resolution)
    except ConfigError:
        test = None
    return train_full, plain, test, _check_classes(10, num_classes, f"CIFAR-10 folder {root}")


def _image_folder_splits(
    root: Path, resolution: int, augment: str, num_classes: int | None
) -> tuple[Dataset, Dataset, Dataset | None, int]:
    """(train, train without augmentation, test or None, classes) of an ImageFolder tree."""
    train_dir, test_dir = root, None
    if (root / "train").is_dir() and looks_like_image_folder(root / "train"):
        train_dir = root / "train"
        for name in ("val", "test"):
            if looks_like_image_folder(root / name):
                test_dir = root / name
                break
    if not looks_like_image_folder(train_dir):
        raise ConfigError(
            f"{root} is neither a CIFAR-10 folder (data_batch_1.bin ... / data_batch_1 ... and "
            "test_batch[.bin]) nor an ImageFolder tree (one sub-folder per class with images, "
            "optionally under train/ and val/ or test/)"
        )
    tr = ImageFolderDataset(train_dir, resolution, augment=augment != "none")
    plain = ImageFolderDataset(train_dir, resolution) if augment == "train" else tr
    test = ImageFolderDataset(test_dir, resolution) if test_dir is not None else None
    if test is not None and test.classes != tr.classes:
        raise ConfigError(f"class folders of {test_dir} differ from those of {train_dir}")
    return tr, plain, test, _check_classes(tr.num_classes, num_classes, f"image folder {train_dir}")


def _folder_bundle(
    source: str | os.PathLike, resolution: int, num_classes: int | None, held_out_fraction: float, seed: int,
    augment: str, max_samples: int | None, cutout_length: int,
) -> DataBundle:  # fmt: skip
    """A folder's bundle: CIFAR-10 or an ImageFolder tree, capped, split, the held-out part unaugmented."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"dataset path {root} does not exist or is not a folder; expected 'generated', a CIFAR-10 "
            "folder (data_batch_1.bin ... or data_batch_1 ...), or an ImageFolder tree (class sub-folders)"
        )
    splits = _cifar_splits if find_cifar10_dir(root) is not None else _image_folder_splits
    train_full, plain, test, k = splits(root, resolution, augment, num_classes)
    train_full, plain = _limit(train_full, max_samples, seed), _limit(plain, max_samples, seed)
    train, held = split_train_held_out(train_full, held_out_fraction, seed)
    if held is not None and plain is not train_full:  # the same held-out items, without augmentation
        held = Subset(plain if not isinstance(plain, Subset) else plain.dataset, _indices(held))
    if cutout_length:
        train = _Cutout(train, cutout_length)
    return DataBundle(train, held, test, k, 3, resolution, str(root))


def build_datasets(
    source: str | os.PathLike,
    *,
    resolution: int,
    num_classes: int | None = None,
    held_out_fraction: float = 0.5,
    num_samples: int = 2000,
    seed: int = 0,
    augment: bool | str = False,
    max_samples: int | None = None,
    cutout_length: int = 0,
) -> DataBundle:
    """Build train / held-out / test datasets from a built-in source or a folder.

    Built-in: ``generated`` (learnable synthetic images), ``shapes[:difficulty]`` (a task where the
    architecture matters, ``tfnas.data.tasks``), ``digits`` (scikit-learn's). A folder is
    auto-detected as CIFAR-10 (binary or python batches, possibly in ``cifar-10-batches-*/``) or as
    an ImageFolder tree: either ``train/`` (+ optional ``val/`` or ``test/``) with class
    sub-folders, or class sub-folders directly (no test split). ``num_samples`` sizes generated data
    (its test set has ``num_samples // 4`` items); ``max_samples`` caps the training set of real data.
    ``augment`` (real data; built-in sources carry their own variation): ``"train"`` augments the
    weights' split only (TF-NAS), ``"all"`` or ``True`` the held-out split as well (DARTS);
    ``cutout_length`` > 0 adds DARTS's cutout to the training split.
    """
    if resolution < 4:
        raise ConfigError(f"resolution must be >= 4, got {resolution}")
    augment = {True: "all", False: "none"}.get(augment, augment)  # type: ignore[call-overload]
    if augment not in AUGMENT:
        raise ConfigError(f"augment = {augment!r}: choose from {', '.join(AUGMENT)}")
    if is_builtin_source(source):
        return _builtin_bundle(source, resolution, num_classes, held_out_fraction, num_samples, seed, cutout_length)
    return _folder_bundle(source, resolution, num_classes, held_out_fraction, seed, str(augment), max_samples,
                          cutout_length)  # fmt: skip


def _indices(subset: Subset) -> list[int]:
    """The indices of ``subset`` in the dataset under all its Subset layers."""
    idx, ds = list(subset.indices), subset.dataset
    while isinstance(ds, Subset):
        idx, ds = [ds.indices[i] for i in idx], ds.dataset
    return idx


class SeededRandomSampler(Sampler[int]):
    """Random order that depends only on ``(seed, epoch)``.

    The epoch advances by itself after each full pass; call ``set_epoch`` (as
    with ``DistributedSampler``) to jump to an epoch when resuming, so a resumed
    run sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.n = len(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        self.epoch += 1
        yield from order


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive numpy/random from it.
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    workers: int = 0,
    drop_last: bool = True,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose order and worker seeds depend only on ``seed`` (and epoch).

    With ``shuffle`` (and no ``sampler``) it uses ``SeededRandomSampler``;
    call ``set_loader_epoch(loader, epoch)`` when resuming. Pass a
    ``DistributedSampler`` as ``sampler`` for DDP (``shuffle`` is then ignored).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if sampler is None and shuffle:
        sampler = SeededRandomSampler(dataset, seed)  # type: ignore[arg-type]
    n = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    if drop_last and n < batch_size:
        raise ConfigError(
            f"dataset has {n} samples (per process) but batch_size is {batch_size}, so no full batch "
            "exists; lower the batch size or use more samples"
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        drop_last=drop_last,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    loader.tfnas_seed = int(seed)  # type: ignore[attr-defined]
    return loader


def evaluation_loader(dataset: Dataset, batch_size: int, seed: int = 0, workers: int = 0) -> DataLoader:
    """Every sample of ``dataset`` once, in batches of a seeded shuffled order (the last one may be short).

    For evaluations on batch statistics (the supernets' BNs have no running statistics): a split kept in
    index order is class-sorted on an ImageFolder tree, and a batch of one class normalises away the very
    features that tell the classes apart. A shuffled order mixes the classes in every batch.
    """
    return make_loader(dataset, batch_size, shuffle=True, seed=seed, workers=workers, drop_last=False)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the loader's next pass the one of ``epoch``: sample order and worker seeds.

    Works for loaders from ``make_loader`` and for any loader whose sampler has
    ``set_epoch`` (e.g. ``DistributedSampler``).
    """
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    seed = getattr(loader, "tfnas_seed", None)
    if seed is not None and loader.generator is not None:
        loader.generator.manual_seed(seed * 1_000_003 + int(epoch))
