"""Synthetic, learnable image classification data.

Lets every search, training and export path run (and be tested) without a
dataset download. Each class has a fixed template: a mean colour, an oriented
sinusoidal grating with its own frequency and colour weights, and a Gaussian
blob at a class-specific place. Samples add a random phase (a shift of the
grating), a jittered blob position, contrast jitter and pixel noise, so a
linear model learns the colour cue quickly and a small CNN also learns the
shift-invariant texture cue.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

# Class templates depend only on (num_classes, channels) and this constant, so a
# train set and a test set built with different sample seeds share the classes.
_TEMPLATE_SEED = 20240611


class GeneratedImages(Dataset):
    """Deterministic synthetic images; item ``i`` depends only on (seed, i).

    Items are ``(image, label)`` with ``image`` a float32 tensor ``C x H x W``
    of roughly zero mean and unit variance and ``label = i % num_classes``
    (balanced classes). Images are generated on access, so memory does not
    grow with ``num_samples`` or ``resolution``.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int = 10,
        resolution: int = 32,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.num_samples = int(num_samples)
        self.num_classes = int(num_classes)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.seed = int(seed)
        self.classes = [f"class_{i}" for i in range(self.num_classes)]

        rng = np.random.default_rng([_TEMPLATE_SEED, self.num_classes, self.channels])
        k = self.num_classes
        # Orientations and frequencies spread evenly, then shuffled, so classes differ clearly.
        self._theta = rng.permutation(np.linspace(0.0, math.pi, k, endpoint=False))
        self._freq = rng.permutation(np.linspace(1.5, 5.0, k))
        self._mean_colour = rng.normal(0.0, 0.3, size=(k, self.channels))
        self._grating_colour = rng.normal(0.0, 1.0, size=(k, self.channels))
        self._grating_colour /= np.linalg.norm(self._grating_colour, axis=1, keepdims=True) + 1e-8
        self._blob_centre = rng.uniform(0.25, 0.75, size=(k, 2))
        self._blob_sign = rng.choice([-1.0, 1.0], size=(k, self.channels))

        coords = (np.arange(self.resolution, dtype=np.float64) + 0.5) / self.resolution
        self._yy, self._xx = np.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.num_samples

    def label_of(self, index: int) -> int:
        return index % self.num_classes

    @property
    def targets(self) -> list[int]:
        return [self.label_of(i) for i in range(self.num_samples)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        c = self.label_of(index)
        rng = np.random.default_rng([self.seed, index])
        xx, yy = self._xx, self._yy

        phase = rng.uniform(0.0, 2.0 * math.pi)
        theta = self._theta[c] + rng.normal(0.0, 0.08)
        freq = self._freq[c] * rng.uniform(0.9, 1.1)
        grating = np.cos(2.0 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)

        centre = self._blob_centre[c] + rng.normal(0.0, 0.12, size=2)
        blob = np.exp(-((xx - centre[1]) ** 2 + (yy - centre[0]) ** 2) / (2.0 * 0.12**2))

        contrast = rng.uniform(0.8, 1.4)
        # Per-sample colour cast, as large as the class colour differences: colour alone is a weak cue.
        colour = self._mean_colour[c] + rng.normal(0.0, 0.3, size=self.channels)
        img = (
            colour[:, None, None]
            + contrast * self._grating_colour[c][:, None, None] * grating[None]
            + 0.5 * self._blob_sign[c][:, None, None] * blob[None]
            + rng.normal(0.0, 0.8, size=(self.channels, self.resolution, self.resolution))
        )
        return torch.from_numpy(img.astype(np.float32)), c

    def __repr__(self) -> str:
        return (
            f"GeneratedImages(num_samples={self.num_samples}, num_classes={self.num_classes}, "
            f"resolution={self.resolution}, channels={self.channels}, seed={self.seed})"
        )
