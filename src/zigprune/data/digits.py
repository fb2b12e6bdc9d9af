"""scikit-learn's bundled 8×8 handwritten digits (1,797 images): a seconds-long demo with no download."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import DataError
from .dataset import Dataset, channel_stats, standardise

SPLIT_SEED = 0
"""The 80/20 train/test split is fixed by this seed, so every run sees the same test set."""
TRAIN_SHARE = 0.8


def load_digits(data_dir: Path | None = None) -> Dataset:
    """Digits 0–9 as 1×8×8 images scaled from 0..16 to 0..1, standardised with the train split's stats."""
    raw_images, raw_labels = _sklearn_digits()
    images = torch.tensor(raw_images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(raw_labels, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(TRAIN_SHARE * len(labels))
    train_idx, test_idx = order[:cut], order[cut:]
    mean, std = channel_stats(images[train_idx])
    standardise(images, mean, std)
    return Dataset(
        name="digits",
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
        num_classes=10,
        input_shape=(1, 8, 8),
        classes=[str(d) for d in range(10)],
    )


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digit images (N, 8, 8) and labels; its bundled file is parsed once per process."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as err:
        raise DataError(
            "the digits dataset needs scikit-learn: pip install scikit-learn (or 'zigprune[data]')"
        ) from err
    return _parse(sklearn_digits)


@cache
def _parse(sklearn_digits: Callable[[], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from scikit-learn's loader, remembered (the arrays are only ever copied)."""
    bunch = sklearn_digits()
    return bunch.images, bunch.target
