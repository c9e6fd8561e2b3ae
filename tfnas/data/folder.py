"""ImageFolder trees (``root/<class>/<image>``): torchvision when installed, else PIL.

Either way items are ``(float32 3 x R x R tensor, int label)``: images are
resized so the short side is ``resolution / 0.875`` and centre-cropped (or
randomly cropped and flipped with ``augment``), then ImageNet-normalised.

Unreadable images (truncated or corrupt files) follow one policy wherever they
land in a batch: skip and count. The item is replaced by the next readable image
in the folder's order, a warning names the file once, and a run of more than
``MAX_CONSECUTIVE_BAD`` unreadable files in a row (a broken dataset, not a stray
file) is an error naming them. A bad file never kills a run in one epoch and
passes unseen in another.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tfnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, random_crop_flip
from tfnas.errors import ConfigError

MAX_CONSECUTIVE_BAD = 20
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


def _is_valid_file(path: str) -> bool:
    # A module-level function (not a lambda) keeps the dataset picklable for spawned workers.
    return _is_image(Path(path))


def looks_like_image_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` has at least one class sub-folder holding an image."""
    root = Path(root)
    if not root.is_dir():
        return False
    for sub in root.iterdir():
        if sub.is_dir() and not sub.name.startswith("."):
            for f in sub.rglob("*"):
                if f.is_file() and _is_image(f):
                    return True
    return False


def scan_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and ``(path, label)`` pairs, like torchvision's ImageFolder."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and _is_image(f):
                samples.append((f, label))
    return classes, samples


class _PILImageFolder(Dataset):
    """Minimal reader used when torchvision is not importable."""

    def __init__(self, root: Path, resolution: int, augment: bool) -> None:
        self.classes, self.samples = scan_image_folder(root)
        self.resolution = resolution
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as im:
            im = im.convert("RGB")
            short = max(1, round(self.resolution / 0.875))
            w, h = im.size
            scale = short / min(w, h)
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - self.resolution) // 2, (h - self.resolution) // 2
            im = im.crop((left, top, left + self.resolution, top + self.resolution))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        if self.augment:
            img = random_crop_flip(img, padding=max(1, self.resolution // 8))
        return normalize(img, IMAGENET_MEAN, IMAGENET_STD), label


class ImageFolderDataset(Dataset):
    """Class-per-sub-folder image dataset; uses torchvision's ImageFolder when available."""

    def __init__(self, root: str | os.PathLike, resolution: int, augment: bool = False) -> None:
        root = Path(root)
        if not looks_like_image_folder(root):
            raise ConfigError(
                f"{root} is not an image folder: expected one sub-folder per class holding image files "
                f"({', '.join(IMG_EXTENSIONS)})"
            )
        self.root = root
        self.resolution = int(resolution)
        try:
            import torchvision
            from torchvision import transforms as T
        except ImportError:
            torchvision = None
        if torchvision is not None:
            if augment:
                tf = [T.RandomResizedCrop(self.resolution), T.RandomHorizontalFlip()]
            else:
                tf = [T.Resize(max(1, round(self.resolution / 0.875))), T.CenterCrop(self.resolution)]
            tf += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
            try:
                self._impl: Dataset = torchvision.datasets.ImageFolder(
                    str(root), transform=T.Compose(tf), is_valid_file=_is_valid_file
                )
            except FileNotFoundError as e:  # a class folder without images (or a hidden one, e.g. .ipynb_checkpoints)
                raise ConfigError(f"image folder {root}: {e}; remove empty or hidden class folders") from None
            self.classes = list(self._impl.classes)
            self.targets = [s[1] for s in self._impl.samples]
        else:
            self._impl = _PILImageFolder(root, self.resolution, augment)
            self.classes = self._impl.classes
            self.targets = [s[1] for s in self._impl.samples]
        self.num_classes = len(self.classes)
        self.skipped: set[str] = set()  # unreadable files met so far (in this process)

    def __len__(self) -> int:
        return len(self._impl)

    def _path(self, index: int) -> str:
        return str(self._impl.samples[index][0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        bad: list[str] = []
        for attempt in range(min(MAX_CONSECUTIVE_BAD + 1, len(self))):
            i = (index + attempt) % len(self)
            try:
                return self._impl[i]
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                path = self._path(i)
                bad.append(f"{path} ({type(e).__name__}: {e})")
                if path not in self.skipped:
                    self.skipped.add(path)
                    print(
                        f"warning: skipping unreadable image {path} ({type(e).__name__}: {e}); the next image"
                        f" takes its place ({len(self.skipped)} skipped so far in {self.root})",
                        file=sys.stderr,
                        flush=True,
                    )
        raise ConfigError(
            f"image folder {self.root}: {len(bad)} unreadable images in a row, e.g. {'; '.join(bad[:3])};"
            " the dataset looks broken (check the files or the copy)"
        )
