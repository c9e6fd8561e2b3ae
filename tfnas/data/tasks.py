"""Built-in classification tasks for judging a search: one where the architecture matters, and real digits.

``shapes`` (generated): each image holds two copies of one of five glyphs (plus, cross, ring, disk,
corner), side by side or one above the other, at a random place, in random colours of random
sign, on a background of random colour, a random gradient and pixel noise; distractor glyphs of other
kinds join as ``difficulty`` grows. The class is (glyph, arrangement): 10 classes. Nothing global
tells them apart (a linear model on pixels stays near chance): a network must recognise a small
shape (local features, kernel size) and relate two instances ~a third of the image apart
(receptive field, depth). ``difficulty`` in [0, 1] sets the noise, the scale jitter and the number
of distractors (0, 1 or 2).

``digits``: the 1,797 8x8 handwritten digits that scikit-learn ships (no download; the
``bench`` extra installs scikit-learn), upsampled bilinearly, 3 channels; a fixed 80/20 split.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tfnas.errors import ConfigError

GLYPHS = ("plus", "cross", "ring", "disk", "corner")
ARRANGEMENTS = ("side_by_side", "one_above_other")


def _glyph_mask(kind: int, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Soft mask of glyph ``kind`` on glyph coordinates in [-1, 1] (outside: 0)."""
    ax, ay = np.abs(vx), np.abs(vy)
    inside = (ax <= 1) & (ay <= 1)
    if kind == 0:  # plus
        m = (ax < 0.28) | (ay < 0.28)
    elif kind == 1:  # cross (an X)
        m = np.abs(ax - ay) < 0.32
    elif kind == 2:  # ring (a square outline)
        m = np.maximum(ax, ay) > 0.62
    elif kind == 3:  # disk
        m = vx**2 + vy**2 < 0.55
    else:  # corner (an L)
        m = (vx < -0.45) | (vy > 0.45)
    return (m & inside).astype(np.float64)


class ShapesTask(Dataset):
    """Deterministic: item ``i`` depends only on (seed, i, resolution, difficulty); label ``i % 10``."""

    num_classes = len(GLYPHS) * len(ARRANGEMENTS)

    def __init__(self, num_samples: int, resolution: int = 16, seed: int = 0, difficulty: float = 0.5):
        if not 0.0 <= difficulty <= 1.0:
            raise ConfigError(f"shapes task difficulty {difficulty}: expected a number in [0, 1]")
        if resolution < 8:
            raise ConfigError(f"shapes task resolution {resolution}: expected at least 8 pixels")
        self.num_samples, self.resolution = int(num_samples), int(resolution)
        self.seed, self.difficulty = seed, difficulty
        self.classes = [f"{g}_{a}" for a in ARRANGEMENTS for g in GLYPHS]
        n = 2 * self.resolution  # rendered at twice the size, then averaged: soft edges
        c = (np.arange(n) + 0.5) / n
        self._yy, self._xx = np.meshgrid(c, c, indexing="ij")

    def __len__(self) -> int:
        return self.num_samples

    @property
    def targets(self) -> list[int]:
        return [i % self.num_classes for i in range(self.num_samples)]

    def _stamp(self, img: np.ndarray, rng: np.random.Generator, kind: int, cy: float, cx: float, size: float) -> None:
        mask = _glyph_mask(kind, (self._xx - cx) / (size / 2), (self._yy - cy) / (size / 2))
        colour = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2, size=3)
        img += colour[:, None, None] * mask[None]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        label = index % self.num_classes
        glyph, arrangement = label % len(GLYPHS), label // len(GLYPHS)
        d = self.difficulty
        rng = np.random.default_rng([self.seed, index, 7])
        size = 0.34 * rng.uniform(1 - 0.2 * d, 1 + 0.2 * d)
        gap = rng.uniform(0.36, 0.52)
        lo, hi = size / 2, 1 - size / 2
        along, across = rng.uniform(lo, hi - gap), rng.uniform(lo, hi)
        (y1, x1), (y2, x2) = (
            ((across, along), (across + rng.normal(0, 0.02), along + gap))
            if arrangement == 0
            else ((along, across), (along + gap, across + rng.normal(0, 0.02)))
        )
        img = np.zeros((3, *self._xx.shape))
        # the background: a random colour and gradient
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (self._xx - 0.5) * math.cos(angle) + (self._yy - 0.5) * math.sin(angle)
        img += rng.normal(0, 0.5, size=(3, 1, 1)) + rng.normal(0, 0.6, size=(3, 1, 1)) * ramp[None]
        others = [k for k in range(len(GLYPHS)) if k != glyph]
        for k in rng.permutation(others)[: int(round(2 * d))]:  # distractors: other kinds, one of each
            self._stamp(img, rng, int(k), rng.uniform(lo, hi), rng.uniform(lo, hi), size)
        self._stamp(img, rng, glyph, y1, x1, size)
        self._stamp(img, rng, glyph, y2, x2, size)
        r = self.resolution
        img = img.reshape(3, r, 2, r, 2).mean((2, 4)) + rng.normal(0, 0.1 + 0.4 * d, size=(3, r, r))
        return torch.from_numpy(img.astype(np.float32)), label


class Digits(Dataset):
    """scikit-learn's 8x8 digits as ``3 x R x R`` float images (zero mean, unit variance); split fixed.

    ``clutter`` > 0 (``digits:<clutter>``, at most 1) makes a harder task than the upsampled digits (which a
    network of the space learns to ~99%): each digit is drawn at a random scale (45-70% of the image) and
    place, beside ``round(3 * clutter)`` fragments (random 4x4 quarters of other digits of the split,
    at the digit's scale) and pixel noise of std ``0.6 * clutter``. Deterministic per (split, index).
    """

    num_classes = 10

    def __init__(self, train: bool, resolution: int = 16, clutter: float = 0.0):
        if not 0.0 <= clutter <= 1.0:
            raise ConfigError(f"digits clutter {clutter}: expected a number in [0, 1]")
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError("data source 'digits' needs scikit-learn: pip install 'tfnas[bench]'") from None
        data = load_digits()
        order = np.random.default_rng(1797).permutation(len(data.target))
        cut = int(0.8 * len(order))
        idx = order[:cut] if train else order[cut:]
        images = torch.from_numpy(data.images[idx].astype(np.float32) / 16.0)[:, None]
        if clutter > 0:
            images = _cluttered(images, resolution, clutter, seed=1 if train else 2)
        else:
            images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
        images = (images - 0.3) / 0.4
        self.images = images.expand(-1, 3, -1, -1).contiguous()
        self.labels = data.target[idx].astype(np.int64)
        self.classes = [str(k) for k in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def _cluttered(digits: torch.Tensor, resolution: int, clutter: float, seed: int) -> torch.Tensor:
    """[N, 1, 8, 8] digits in [0, 1] -> [N, 1, R, R]: each at a random scale and place, with fragments of
    others and noise (``Digits(clutter=...)``)."""
    rng = np.random.default_rng([seed, 2026])
    r, n = resolution, len(digits)
    out = torch.zeros(n, 1, r, r)
    for i in range(n):
        size = int(round(r * rng.uniform(0.45, 0.7)))
        canvas = out[i, 0]
        for _ in range(int(round(3 * clutter))):  # fragments first: the digit is drawn over them
            other = digits[int(rng.integers(n))]
            qy, qx = int(rng.integers(2)) * 4, int(rng.integers(2)) * 4
            frag = F.interpolate(other[None, :, qy : qy + 4, qx : qx + 4], size=(size // 2,) * 2, mode="bilinear")
            y, x = (int(v) for v in rng.integers(0, r - size // 2 + 1, size=2))
            view = canvas[y : y + size // 2, x : x + size // 2]
            view.copy_(torch.maximum(view, frag[0, 0]))
        digit = F.interpolate(digits[i : i + 1], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        y, x = (int(v) for v in rng.integers(0, r - size + 1, size=2))
        view = canvas[y : y + size, x : x + size]
        view.copy_(torch.maximum(view, digit))
        canvas += torch.from_numpy(rng.normal(0, 0.6 * clutter, size=(r, r)).astype(np.float32))
    return out
