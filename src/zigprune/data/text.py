"""Plain text for language models: lines from a file, or the built-in ``python-docs``.

``python-docs`` is CPython's own language reference (``pydoc_data.topics``, about 65k words, in every
Python install), cut into paragraphs. The first part of the lines is for calibration or training,
the rest is held out for evaluation. Tokenizing is left to the model's own tokenizer (``batches``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from ..errors import DataError
from .dataset import Dataset

PREFIX = "text:"
BUILTIN = "python-docs"
MIN_WORDS = 8


@dataclass
class TextData:
    """Lines of text: ``train`` (the first part, for calibration/training) and ``test`` (held out)."""

    name: str
    train: list[str]
    test: list[str]


def is_text(name: str) -> bool:
    """Whether a dataset name asks for text (``text:FILE`` or ``text:python-docs``)."""
    return str(name).strip().lower().startswith(PREFIX)


def load_text(name: str, *, test_share: float = 0.2, min_words: int = MIN_WORDS) -> TextData:
    """``text:python-docs`` or ``text:FILE`` (one passage per line) as train/test lines.

    Lines with fewer than ``min_words`` words are dropped; the last ``test_share`` of the rest is
    held out. Raises ``DataError`` for a missing, unreadable or too short file.
    """
    source = str(name).strip()[len(PREFIX) :] if is_text(name) else str(name).strip()
    if not source:
        raise DataError(f"give a text source: {PREFIX}{BUILTIN} or {PREFIX}FILE (one passage per line)")
    lines = _python_docs() if source == BUILTIN else _file_lines(Path(source))
    lines = [line for line in lines if len(line.split()) >= min_words]
    if len(lines) < 2:
        raise DataError(
            f"{source} has {len(lines)} line(s) of at least {min_words} words; text data needs two or more "
            "(one passage per line)"
        )
    cut = min(len(lines) - 1, max(1, round(len(lines) * (1 - test_share))))
    return TextData(f"{PREFIX}{source}", lines[:cut], lines[cut:])


def _python_docs() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = (p for key in sorted(topics) for p in re.split(r"\n\s*\n", topics[key]))
    return [" ".join(p.split()) for p in paragraphs]


def _file_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; give {PREFIX}FILE with one passage per line")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as UTF-8 text ({type(err).__name__}: {err})") from None
    return [" ".join(line.split()) for line in text.splitlines()]


def batches(
    tokenizer: Callable[..., Any], lines: Sequence[str], *, batch_size: int = 16, max_length: int = 128
) -> list[dict[str, Any]]:
    """Tokenized batches (``input_ids``, ``attention_mask`` ...) of ``lines``, padded per batch, truncated:
    :class:`TokenizedLines` batched in order, the one way text is tokenized."""
    return TokenizedLines(tokenizer, lines, max_length=max_length).batches(batch_size)


class TokenizedLines(TorchDataset):
    """Lines tokenized once, padded to ``max_length``; a batch (``take``) is cut to its longest line.

    An item is ``(inputs, 0)``: the keyword inputs of one line (``input_ids``, ``attention_mask`` ...)
    and a placeholder label, since text lines carry none; the training loop reads batches with ``take``.
    """

    def __init__(self, tokenizer: Callable[..., Any], lines: Sequence[str], *, max_length: int = 128) -> None:
        encoded = tokenizer(list(lines), padding="max_length", truncation=True, max_length=max_length,
                            return_tensors="pt")  # fmt: skip
        self.inputs = {k: v for k, v in encoded.items() if isinstance(v, torch.Tensor)}
        self.lengths = self.inputs["attention_mask"].sum(1)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        return self.take(torch.tensor([index]))[0], 0

    def take(self, indices: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The lines at ``indices`` as one batch of keyword inputs, padded to the longest of them."""
        width = max(int(self.lengths[indices].max()), 1) if len(indices) else 1
        columns = slice(-width, None) if self.left else slice(0, width)
        batch = {k: v[indices, columns] for k, v in self.inputs.items()}
        return batch, torch.zeros(len(indices), dtype=torch.long)

    def batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        """Every line, in order, as batches of keyword inputs (for evaluation)."""
        return [self.take(torch.arange(b, min(b + batch_size, len(self))))[0]
                for b in range(0, len(self), batch_size)]  # fmt: skip


def tokenized(
    name: str, tokenizer: Callable[..., Any], *, max_length: int = 128, subset: int | None = None
) -> Dataset:
    """Text data ``name`` as a training ``Dataset``: its first lines (``subset`` of them, if given) to
    train on and its held-out lines to evaluate on, tokenized; no labels (``num_classes`` 0)."""
    text = load_text(name)
    lines = text.train[:subset] if subset is not None else text.train
    train, test = (TokenizedLines(tokenizer, part, max_length=max_length) for part in (lines, text.test))
    return Dataset(text.name, train, test, num_classes=0, input_shape=())
