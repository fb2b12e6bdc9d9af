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

from ..errors import DataError

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
    """Tokenized batches (``input_ids``, ``attention_mask`` ...) of ``lines``, padded per batch, truncated."""
    out = []
    for begin in range(0, len(lines), batch_size):
        encoded = tokenizer(
            list(lines[begin : begin + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        out.append(dict(encoded))
    return out
