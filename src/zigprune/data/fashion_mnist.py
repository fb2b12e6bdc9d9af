"""Fashion-MNIST from the standard idx files (gzipped or not), as shipped by ``dataset-fashion-mnist``."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import DataError
from .augment import Augment
from .dataset import Dataset, standardise

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MEAN, STD = 0.2860, 0.3530
CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_UBYTE = 0x08


def load_fashion_mnist(data_dir: Path | None = None) -> Dataset:
    """60,000 train and 10,000 test 1×28×28 images of clothing, standardised; train augment: random flips."""
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    train_x, train_y = _pair(arrays["train_images"], arrays["train_labels"], folder, "train")
    test_x, test_y = _pair(arrays["test_images"], arrays["test_labels"], folder, "t10k")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"Fashion-MNIST in {folder}: train and test images differ in size; re-download the files"
        )
    return Dataset(
        name="fashion-mnist",
        train=TensorDataset(train_x, train_y),
        test=TensorDataset(test_x, test_y),
        num_classes=len(CLASSES),
        input_shape=tuple(train_x.shape[1:]),
        classes=list(CLASSES),
        augment=Augment(flip=True),
    )


def read_idx(path: Path) -> np.ndarray:
    """The unsigned-byte array in an idx file (gzip detected from its content), its header checked."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path} is not a readable gzip file ({err}); re-download it") from err
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an idx file; re-download it")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or ndim not in (1, 3):
        raise DataError(
            f"{path} has magic number 0x{raw[:4].hex()}, not an idx unsigned-byte file "
            "(0x00000801 labels, 0x00000803 images); re-download it"
        )
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    if len(dims) != ndim or len(raw) - header != math.prod(dims):
        raise DataError(f"{path} is truncated or padded: its header promises shape {dims}; re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    """``stem.gz`` or ``stem`` in ``folder``; a DataError saying how to get Fashion-MNIST otherwise."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"Fashion-MNIST not found in {folder} (no {stem}.gz): apt-get install dataset-fashion-mnist, "
        f"or download the four idx files from https://github.com/zalandoresearch/fashion-mnist into DIR "
        "and pass --data-dir DIR"
    )


def _pair(images: np.ndarray, labels: np.ndarray, folder: Path, split: str) -> tuple[Tensor, Tensor]:
    """Standardised float images (N, 1, H, W) and int64 labels, checked to match one another."""
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"Fashion-MNIST {split} files in {folder} are swapped (images must be 3-d, labels 1-d)"
        )
    if len(images) != len(labels):
        raise DataError(
            f"Fashion-MNIST {split} files in {folder} disagree: {len(images)} images, {len(labels)} labels"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"Fashion-MNIST {split} labels in {folder} go up to {labels.max()}; expected 0..9")
    x = torch.from_numpy(images.astype(np.float32)).div_(255).unsqueeze(1)
    return standardise(x, [MEAN], [STD]), torch.from_numpy(labels.astype(np.int64))
