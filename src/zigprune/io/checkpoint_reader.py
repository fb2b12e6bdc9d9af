"""A ``.safetensors`` checkpoint (one file, or a sharded folder with its index) read lazily.

Nothing is loaded until asked for, and then only what is asked: one whole tensor (``tensor``) or
the kept slices of one (``read``), taken straight from the memory-mapped file. This is how the
group norms and the slim weights of a model larger than memory are read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import LoadError, first_line

INDEX = "model.safetensors.index.json"
#: Rows of an uncut dim read at once, in bytes: bounds the memory one read holds beyond its result.
CHUNK_BYTES = 64 * 2**20


class Checkpoint:
    """Tensors of a ``.safetensors`` file, or of a folder of shards named by its index file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._where = self._index()

    def _index(self) -> dict[str, Path]:
        if self.path.is_file():
            return dict.fromkeys(self._open(self.path).keys(), self.path)
        index = self.path / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as err:
                raise LoadError(f"{index} is not a safetensors index ({first_line(err)})") from None
            return {name: self.path / shard for name, shard in weight_map.items()}
        single = self.path / "model.safetensors"
        if single.is_file():
            self.path = single
            return self._index()
        raise LoadError(
            f"{self.path} is neither a .safetensors file nor a folder with {INDEX} or model.safetensors"
        )

    @staticmethod
    def _open(file: Path) -> Any:
        """A fresh handle per access: its memory map (whose touched pages count as the process's memory)
        is released with it, so reading every tensor once never maps the whole checkpoint at a time."""
        from safetensors import SafetensorError, safe_open

        try:
            return safe_open(str(file), framework="pt")
        except (SafetensorError, OSError) as err:
            raise LoadError(f"{file} is not a readable .safetensors file ({first_line(err)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def names(self) -> list[str]:
        return list(self._where)

    def _file(self, name: str) -> Any:
        if name not in self._where:
            raise LoadError(f"{self.path} has no tensor {name!r}")
        return self._open(self._where[name])

    def _slice(self, name: str) -> Any:
        return self._file(name).get_slice(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._slice(name).get_shape())

    def tensor(self, name: str) -> torch.Tensor:
        """One whole tensor."""
        return self._file(name).get_tensor(name)

    def read(self, name: str, cuts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """Tensor ``name`` with only the ``cuts`` indices kept along each cut dim.

        Dim 0 is read in runs of kept rows (or, when it is not cut, in chunks of about
        ``CHUNK_BYTES``); the other cuts are applied to each piece before the next is read.
        """
        piece = self._slice(name)
        shape = tuple(piece.get_shape())
        if not shape:
            return self.tensor(name)
        by_dim = dict(cuts)
        rest = [(d, i) for d, i in cuts if d != 0]
        pieces = []
        for start, stop in _runs(by_dim.get(0), shape, piece.get_dtype()):
            part = piece[start:stop]
            for dim, index in rest:
                part = part.index_select(dim, index)
            pieces.append(part)
        return torch.cat(pieces, 0) if len(pieces) > 1 else pieces[0]


def _runs(index: torch.Tensor | None, shape: tuple[int, ...], dtype: str) -> list[tuple[int, int]]:
    """Row ranges to read along dim 0: runs of consecutive kept rows, or even chunks when nothing is cut."""
    if index is None:
        row_bytes = math.prod(shape[1:]) * _ITEM_BYTES.get(dtype, 4)
        step = max(1, CHUNK_BYTES // max(row_bytes, 1))
        return [(start, min(start + step, shape[0])) for start in range(0, shape[0], step)]
    rows = index.tolist()
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row:
            runs[-1] = (runs[-1][0], row + 1)
        else:
            runs.append((row, row + 1))
    return runs


_ITEM_BYTES = {
    "F64": 8,
    "I64": 8,
    "F32": 4,
    "I32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
