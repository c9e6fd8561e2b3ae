"""ImageFolder trees (``root/<class>/<image>``), read by torchvision (installed with timm).

Items are ``(float32 3 x R x R tensor, int label)``: images are
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

import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from tfnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tfnas.errors import ConfigError

_log = logging.getLogger(__name__)

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


class ImageFolderDataset(Dataset):
    """Class-per-sub-folder image dataset: torchvision's ImageFolder, with the skip-and-count policy."""

    def __init__(self, root: str | os.PathLike, resolution: int, augment: bool = False) -> None:
        root = Path(root)
        if not looks_like_image_folder(root):
            raise ConfigError(
                f"{root} is not an image folder: expected one sub-folder per class holding image files "
                f"({', '.join(IMG_EXTENSIONS)})"
            )
        self.root = root
        self.resolution = int(resolution)
        import torchvision  # here, not at import: it takes a second and most runs read no image folder
        from torchvision import transforms as T

        if augment:
            # the TF-NAS search and DARTS ImageNet recipes: random-resized crop, flip and colour jitter
            tf = [T.RandomResizedCrop(self.resolution), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.2)]
        else:
            tf = [T.Resize(max(1, round(self.resolution / 0.875))), T.CenterCrop(self.resolution)]
        tf += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        try:
            self._impl = torchvision.datasets.ImageFolder(
                str(root), transform=T.Compose(tf), is_valid_file=_is_valid_file
            )
        except FileNotFoundError as e:  # a class folder without images (or a hidden one, e.g. .ipynb_checkpoints)
            raise ConfigError(f"image folder {root}: {e}; remove empty or hidden class folders") from None
        self.classes = list(self._impl.classes)
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
                    _log.warning(
                        "skipping unreadable image %s (%s: %s); the next image takes its place"
                        " (%d skipped so far in %s)", path, type(e).__name__, e, len(self.skipped), self.root,
                    )  # fmt: skip
        raise ConfigError(
            f"image folder {self.root}: {len(bad)} unreadable images in a row, e.g. {'; '.join(bad[:3])};"
            " the dataset looks broken (check the files or the copy)"
        )
