"""Batch-level train augmentation: random crops after zero padding and random horizontal flips."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass(frozen=True)
class Augment:
    """Randomly crop each (N, C, H, W) image back to H×W after ``padding`` zeros, then maybe flip it.

    Images are already normalised, so the zero padding is the dataset mean. Randomness comes from
    ``generator`` or, by default, torch's global generator, so ``torch.manual_seed`` makes runs repeat.
    """

    padding: int = 0
    flip: bool = True

    def __call__(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A new augmented batch; ``batch`` itself is left unchanged."""
        if self.padding:
            batch = _random_crop(batch, self.padding, generator)
        if self.flip:
            batch = _random_flip(batch, generator)
        return batch


def _random_flip(batch: Tensor, generator: torch.Generator | None) -> Tensor:
    """Mirror each image left-right with probability one half."""
    mask = torch.rand(batch.shape[0], generator=generator) < 0.5
    mask = mask.to(batch.device).reshape(-1, *([1] * (batch.dim() - 1)))
    return torch.where(mask, batch.flip(-1), batch)


def _random_crop(batch: Tensor, padding: int, generator: torch.Generator | None) -> Tensor:
    """Pad every side by ``padding`` zeros and cut an H×W window at a random offset per image."""
    n, c, h, w = batch.shape
    padded = F.pad(batch, (padding,) * 4)
    top = torch.randint(2 * padding + 1, (n,), generator=generator).to(batch.device)
    left = torch.randint(2 * padding + 1, (n,), generator=generator).to(batch.device)
    rows = (top[:, None] + torch.arange(h, device=batch.device)).reshape(n, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=batch.device)).reshape(n, 1, 1, w)
    images = torch.arange(n, device=batch.device).reshape(n, 1, 1, 1)
    channels = torch.arange(c, device=batch.device).reshape(1, c, 1, 1)
    return padded[images, channels, rows, cols]
