"""CIFAR-10 from the standard "python version" batches, unpickled with a whitelist (no code can run)."""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import tarfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import DataError
from .augment import Augment
from .dataset import Dataset, standardise

DEFAULT_DIR = Path("data")
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SHAPE = (3, 32, 32)
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _numpy(modules: tuple[str, ...], name: str) -> Callable[[], Any]:
    """Resolve ``name`` from the first importable module (numpy 2 renamed ``numpy.core``)."""

    def resolve() -> Any:
        for module in modules:
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue
        raise DataError(f"this numpy has no {name}; the CIFAR-10 batches cannot be read with it")

    return resolve


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    **{(m, "_reconstruct"): _numpy(_MULTIARRAY, "_reconstruct") for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _numpy(_NUMERIC, "_frombuffer") for m in _NUMERIC},
    ("builtins", "dict"): lambda: dict,
    ("builtins", "list"): lambda: list,
    ("builtins", "bytes"): lambda: bytes,
    ("_codecs", "encode"): lambda: codecs.encode,
}
"""Everything a CIFAR-10 batch pickle refers to: numpy array reconstruction and plain containers."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, dicts, lists and bytes; any other global raises a DataError."""

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """The whitelisted object for ``module.name``; a DataError, before anything runs, otherwise."""
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise DataError(
                f"{self.source} asks to load {module}.{name}, which no CIFAR-10 batch needs; refusing to "
                f"unpickle it: replace it with the genuine file from {URL}"
            )
        return resolve()


def unpickle_batch(data: bytes, source: str) -> dict[str, Any]:
    """A CIFAR batch file's dict, with its bytes keys decoded to str; never runs code from the file."""
    try:
        obj = _BatchUnpickler(data, source).load()
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{source} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise DataError(f"{source} holds a {type(obj).__name__}, not a CIFAR-10 batch dict; re-download it")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def load_cifar10(data_dir: Path | None = None) -> Dataset:
    """50,000 train and 10,000 test 3×32×32 images, standardised; train augment: pad-4 crops and flips.

    ``data_dir`` (default ``./data``) holds the batches, a ``cifar-10-batches-py`` folder with them, or
    the unextracted ``cifar-10-python.tar.gz``.
    """
    read = _reader(Path(data_dir) if data_dir is not None else DEFAULT_DIR)
    parts = [_images_labels(unpickle_batch(*read(name)), name) for name in TRAIN_BATCHES]
    test_x, test_y = _images_labels(unpickle_batch(*read("test_batch")), "test_batch")
    meta = unpickle_batch(*read("batches.meta"))
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if len(classes) != 10:
        raise DataError("batches.meta has no 10 label_names; it is not the CIFAR-10 meta file")
    return Dataset(
        name="cifar10",
        train=TensorDataset(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])),
        test=TensorDataset(test_x, test_y),
        num_classes=10,
        input_shape=SHAPE,
        classes=classes,
        augment=Augment(padding=4, flip=True),
    )


def _reader(folder: Path) -> Callable[[str], tuple[bytes, str]]:
    """A function from batch name to (file bytes, where it came from), over a folder or the archive."""
    for candidate in (folder, folder / FOLDER):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return partial(_read_file, candidate)
    if (folder / ARCHIVE).is_file():
        return _archive_reader(folder / ARCHIVE)
    raise DataError(
        f"CIFAR-10 not found in {folder} (no {TRAIN_BATCHES[0]}, {FOLDER}/ or {ARCHIVE}): download "
        f'"CIFAR-10 python version" from {URL} into DIR and pass --data-dir DIR'
    )


def _read_file(folder: Path, name: str) -> tuple[bytes, str]:
    """The bytes of batch ``name`` in ``folder``, or a DataError naming it."""
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"{path} is missing; the CIFAR-10 folder needs data_batch_1..5, test_batch, batches.meta"
        )
    return path.read_bytes(), str(path)


def _archive_reader(archive: Path) -> Callable[[str], tuple[bytes, str]]:
    """Read batch files straight out of the ``.tar.gz`` (in memory; nothing is extracted to disk)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            files = {
                Path(m.name).name: tar.extractfile(m).read()
                for m in tar.getmembers()
                if m.isfile() and Path(m.name).parent.name == FOLDER
            }
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive} is not a readable tar.gz ({err}); re-download it from {URL}") from err

    def read(name: str) -> tuple[bytes, str]:
        if name not in files:
            raise DataError(f"{archive} has no {FOLDER}/{name}; re-download it from {URL}")
        return files[name], f"{archive}:{FOLDER}/{name}"

    return read


def _images_labels(batch: dict[str, Any], source: str) -> tuple[Tensor, Tensor]:
    """Standardised (N, 3, 32, 32) float images and int64 labels from one batch dict, checked."""
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: 'data' must be a uint8 array of shape (N, 3072); re-download the batches")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0, dtype=np.int64)
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{source}: 'labels' must be {len(data)} integers in 0..9; re-download the batches")
    images = torch.from_numpy(data.reshape(-1, *SHAPE).astype(np.float32)).div_(255)
    return standardise(images, MEAN, STD), torch.from_numpy(labels)
