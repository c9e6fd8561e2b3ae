"""Tensor-level preprocessing shared by the dataset readers (no torchvision needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(img: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalise a float ``C x H x W`` image in [0, 1] per channel."""
    m = torch.tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=img.dtype).view(-1, 1, 1)
    return (img - m) / s


def resize(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of a ``C x H x W`` float image to ``resolution x resolution``."""
    if img.shape[-1] == resolution and img.shape[-2] == resolution:
        return img
    out = F.interpolate(img[None], size=(resolution, resolution), mode="bilinear", align_corners=False)
    return out[0]


def random_crop_flip(img: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation: pad-and-random-crop plus horizontal flip.

    Uses torch's global RNG, which DataLoader seeds per worker from its own
    generator, so augmentation is reproducible for a seeded loader.
    """
    _, h, w = img.shape
    if padding > 0:
        padded = F.pad(img, (padding, padding, padding, padding))
        top = int(torch.randint(0, 2 * padding + 1, (1,)))
        left = int(torch.randint(0, 2 * padding + 1, (1,)))
        img = padded[:, top : top + h, left : left + w]
    if bool(torch.rand(()) < 0.5):
        img = img.flip(-1)
    return img


def cutout(img: torch.Tensor, length: int) -> torch.Tensor:
    """DARTS's cutout: a ``length x length`` square (clipped at the border) set to 0, centred at a random pixel."""
    _, h, w = img.shape
    cy, cx = int(torch.randint(0, h, (1,))), int(torch.randint(0, w, (1,)))
    out = img.clone()
    out[:, max(0, cy - length // 2) : min(h, cy + length // 2), max(0, cx - length // 2) : min(w, cx + length // 2)] = 0
    return out
