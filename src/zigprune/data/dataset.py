"""The in-memory dataset every loader returns, plus the normalisation and subsetting they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset, TensorDataset

from ..errors import DataError


@dataclass
class Dataset:
    """A train/test pair of (float32 C×H×W image, int64 label) datasets and what a model needs to know."""

    name: str
    train: TorchDataset
    test: TorchDataset
    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[str] | None = None
    augment: Callable[[Tensor], Tensor] | None = None


def standardise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Subtract the per-channel ``mean`` and divide by ``std`` of an (N, C, H, W) batch, in place."""
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=images.dtype).reshape(shape)
    std_t = torch.as_tensor(std, dtype=images.dtype).reshape(shape)
    return images.sub_(mean_t).div_(std_t)


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of an (N, C, H, W) batch (std floored to avoid /0)."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-6).tolist()


def take_subset(data: Dataset, subset: int | None, seed: int, test: int | None = None) -> Dataset:
    """Keep ``subset`` random training samples (all if None) and ``test`` random test samples.

    ``test`` defaults to the training subset's share of the test set (at least one). The choice
    depends only on ``seed`` and the dataset sizes; kept samples stay in their original order.
    """
    for label, value in (("subset", subset), ("test subset", test)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DataError(f"{label} must be a positive number of samples, got {value!r}")
    n_train, n_test = len(data.train), len(data.test)
    keep_train = n_train if subset is None else min(subset, n_train)
    keep_test = min(n_test, test if test is not None else max(1, round(n_test * keep_train / n_train)))
    generator = torch.Generator().manual_seed(seed)
    train_idx = torch.randperm(n_train, generator=generator)[:keep_train].sort().values
    test_idx = torch.randperm(n_test, generator=generator)[:keep_test].sort().values
    train = data.train if keep_train == n_train else _select(data.train, train_idx)
    return replace(data, train=train, test=data.test if keep_test == n_test else _select(data.test, test_idx))


def _select(dataset: TorchDataset, indices: Tensor) -> TorchDataset:
    """Rows ``indices`` of a dataset, staying an in-memory TensorDataset when it was one."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[indices] for t in dataset.tensors))
    return Subset(dataset, indices.tolist())
