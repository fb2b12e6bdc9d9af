"""Any folder of images in class subfolders: ``PATH/train/<class>/*`` and ``PATH/val`` (or ``test``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import DataError
from .augment import Augment
from .dataset import Dataset, channel_stats, standardise

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
EVAL_SPLITS = ("val", "test")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def load_imagefolder(data_dir: Path | None, size: tuple[int, int] | None = None) -> Dataset:
    """Images of ``data_dir/train/<class>/`` and ``data_dir/val/`` (or ``test/``), decoded once with Pillow.

    Classes are the sorted subfolders of ``train``. Every image is resized (bilinear) to ``size`` =
    (width, height), by default the size of the first training image (first class, first file in
    sorted order). Images are greyscale (1 channel) when every training image is, RGB otherwise;
    they are standardised with the training set's per-channel mean and std. Augment: random flips.
    """
    image = _pillow()
    if data_dir is None:
        raise DataError("imagefolder needs a folder: use imagefolder:PATH or pass --data-dir PATH")
    root = Path(data_dir)
    classes = _class_folders(root / "train")
    train_files = _files(root / "train", classes)
    mode = "L" if all(_header(image, path).mode in _GREY_MODES for path, _ in train_files) else "RGB"
    size = size or _header(image, train_files[0][0]).size
    eval_dir = next((root / s for s in EVAL_SPLITS if (root / s).is_dir()), None)
    if eval_dir is None:
        raise DataError(f"{root} has no val/ or test/ folder: put held-out images in {root / 'val'}/<class>/")
    unknown = sorted(set(_class_folders(eval_dir)) - set(classes))
    if unknown:
        raise DataError(
            f"{eval_dir} has classes not in {root / 'train'}: {', '.join(unknown)}; add or remove them"
        )
    train_x, train_y = _decode(image, train_files, mode, size)
    test_x, test_y = _decode(image, _files(eval_dir, classes, skip_missing=True), mode, size)
    mean, std = channel_stats(train_x)
    return Dataset(
        name=f"imagefolder:{root}",
        train=TensorDataset(standardise(train_x, mean, std), train_y),
        test=TensorDataset(standardise(test_x, mean, std), test_y),
        num_classes=len(classes),
        input_shape=tuple(train_x.shape[1:]),
        classes=classes,
        augment=Augment(flip=True),
    )


def _pillow() -> Any:
    """Pillow's ``Image`` module, or a DataError saying how to install it."""
    try:
        from PIL import Image
    except ImportError as err:
        raise DataError("imagefolder needs Pillow to decode images: pip install pillow") from err
    return Image


def _class_folders(split: Path) -> list[str]:
    """Sorted names of the non-hidden subfolders of ``split``; a DataError when there are none."""
    if not split.is_dir():
        raise DataError(f"{split} does not exist: put training images in {split}/<class>/*.png|jpg")
    classes = sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split} has no class folders: put images in {split}/<class>/*.png|jpg")
    return classes


def _files(split: Path, classes: list[str], skip_missing: bool = False) -> list[tuple[Path, int]]:
    """(image path, class index) for every image under ``split/<class>/``, in sorted order."""
    files = []
    for label, name in enumerate(classes):
        folder = split / name
        if skip_missing and not folder.is_dir():
            continue
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        if not found:
            raise DataError(f"{folder} has no images ({', '.join(sorted(SUFFIXES))}); add some or remove it")
        files += [(path, label) for path in found]
    return files


def _header(image: Any, path: Path) -> Any:
    """The image at ``path``, opened lazily (only its header is read)."""
    with _opened(image, path) as opened:
        return opened


@contextmanager
def _opened(image: Any, path: Path) -> Iterator[Any]:
    """The image at ``path`` opened with Pillow; a DataError naming the file if it cannot be read or
    claims more pixels than Pillow decodes safely (a decompression bomb)."""
    try:
        with image.open(path) as opened:
            yield opened
    except image.DecompressionBombError as err:
        raise DataError(
            f"{path} is too large to decode safely ({err}); shrink or remove it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from err
    except (OSError, image.UnidentifiedImageError) as err:
        raise DataError(f"{path} is not a readable image ({err}); remove or replace it") from err


def _decode(
    image: Any, files: list[tuple[Path, int]], mode: str, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Float images (N, C, H, W) in 0..1 and int64 labels, every image converted to ``mode`` and ``size``."""
    arrays = []
    for path, _ in files:
        with _opened(image, path) as opened:
            picture = opened.convert(mode)
        if picture.size != tuple(size):
            picture = picture.resize(tuple(size), image.Resampling.BILINEAR)
        arrays.append(np.asarray(picture, dtype=np.uint8).reshape(size[1], size[0], -1))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255).contiguous()
    return pixels, torch.tensor([label for _, label in files], dtype=torch.int64)
