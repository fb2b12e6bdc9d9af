"""Datasets by name: ``load("fashion-mnist")`` gives in-memory train/test sets ready for a training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .augment import Augment
from .cifar10 import load_cifar10
from .dataset import Dataset, take_subset
from .digits import load_digits
from .fashion_mnist import load_fashion_mnist
from .imagefolder import load_imagefolder


@dataclass(frozen=True)
class _Entry:
    """A loader and how ``names()`` shows it; ``folder_arg`` marks names that take ``NAME:PATH``."""

    loader: Callable[[Path | None], Dataset]
    folder_arg: bool = False


_LOADERS: dict[str, _Entry] = {
    "cifar10": _Entry(load_cifar10),
    "digits": _Entry(load_digits),
    "fashion-mnist": _Entry(load_fashion_mnist),
    "imagefolder": _Entry(load_imagefolder, folder_arg=True),
}
DEFAULT = "digits"


def names() -> list[str]:
    """The dataset names ``load`` accepts, sorted; ``imagefolder:PATH`` takes its folder in the name."""
    return [f"{name}:PATH" if entry.folder_arg else name for name, entry in sorted(_LOADERS.items())]


def load(
    name: str,
    data_dir: str | Path | None = None,
    *,
    subset: int | None = None,
    seed: int = 0,
    test_subset: int | None = None,
) -> Dataset:
    """Load dataset ``name`` (see ``names()``) from ``data_dir`` or its default location, decoded in memory.

    ``subset`` keeps that many random training samples and the same share of the test set (at least
    one) unless ``test_subset`` says how many test samples to keep; the choice depends on ``seed``
    alone. Raises ``DataError`` saying how to get missing data.
    """
    key, _, folder = name.partition(":")
    entry = _LOADERS.get(key.strip().lower().replace("_", "-"))
    if entry is None:
        hint = f"; for lines of text in a file, say text:{name}" if _looks_like_text(name) else ""
        raise DataError(
            f"unknown dataset {name!r}; valid names: {', '.join(names())}, and for a hf: model "
            f"text:FILE or text:python-docs{hint}"
        )
    if folder and not entry.folder_arg:
        raise DataError(f"dataset {key!r} takes no folder in its name; pass data_dir (--data-dir) instead")
    if folder and data_dir is not None:
        raise DataError(f"{name!r} names a folder and data_dir={str(data_dir)!r} another; give it once")
    data = entry.loader(Path(folder or data_dir) if (folder or data_dir) else None)
    if subset is None and test_subset is None:
        return data
    return take_subset(data, subset, seed, test_subset)


def _looks_like_text(name: str) -> bool:
    """A file name the user may have meant as ``text:FILE``: a .txt path, or a file that exists."""
    path = Path(name).expanduser()
    return path.suffix.lower() in (".txt", ".text", ".md") or path.is_file()


__all__ = ["DEFAULT", "Augment", "Dataset", "load", "names", "take_subset"]
