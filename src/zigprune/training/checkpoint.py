"""Pickle-free, atomic checkpoints of nested training state (model, optimizer, scheduler, history, RNG).

One ``.safetensors`` file holds every tensor under a flattened key; its metadata holds the structure
as JSON (dicts with any key type, lists, tuples, Python scalars, non-finite floats), so a checkpoint
is one file, replaced atomically, and loading never unpickles anything.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import LoadError, ZigpruneError
from ..io.atomic import atomic_write
from .loop import Hook, Loop

FORMAT = "zigprune-checkpoint"
VERSION = "1"


class CheckpointError(ZigpruneError, TypeError):
    """The state holds a value a checkpoint cannot store without pickle."""


def save(path: str | os.PathLike[str], state: Any) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, "", tensors)
    metadata = {"format": FORMAT, "version": VERSION, "structure": json.dumps(structure, allow_nan=False)}
    atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
    return path


def load(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint written by ``save``; raises ``LoadError`` if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"no checkpoint at {path}; start without --resume")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        if metadata.get("format") != FORMAT:
            raise ValueError("not a zigprune checkpoint")
        return _decode(json.loads(metadata["structure"]), tensors)
    except (SafetensorError, ValueError, KeyError, TypeError, OSError) as err:
        raise LoadError(
            f"checkpoint {path} is corrupt ({err}); delete it and start again without --resume"
        ) from None


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = key or "tensor"
        while name in tensors:
            name += "_"
        tensors[name] = value.detach().cpu().clone().contiguous()
        return {"$tensor": name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, f"{key}.{k}" if key else k, tensors) for k, v in value.items()}
        return {"$dict": [[_encode(k, key, {}), _encode(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return _encode(value.item(), key, tensors)
    raise CheckpointError(
        f"cannot checkpoint a {type(value).__name__} at {key or 'the top level'}; "
        "store tensors, numbers, strings, lists, tuples or dicts of them"
    )


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$float" in value:
        return float(value["$float"])
    if "$tuple" in value:
        return tuple(_decode(v, tensors) for v in value["$tuple"])
    if "$dict" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["$dict"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


class Checkpointer(Hook):
    """Saves ``Loop.state_dict()`` to ``path`` every ``every`` steps, at each epoch end, and on interrupt.

    A ``tag`` (JSON-like values) is saved beside the state under ``"tag"``, so a resume can check
    that a checkpoint belongs to the run (``zigprune compress`` tags its stage and settings).
    """

    def __init__(
        self, path: str | os.PathLike[str], every: int | None = None, tag: dict[str, Any] | None = None
    ) -> None:
        self.path = Path(path)
        self.every = every
        self.tag = tag
        self.saved_step: int | None = None

    def save(self, loop: Loop) -> None:
        """Write the loop's state (and the tag, if any) now."""
        state = loop.state_dict()
        save(self.path, state if self.tag is None else {**state, "tag": self.tag})
        self.saved_step = loop.step

    def after_step(self, loop: Loop) -> None:
        if self.every and loop.step % self.every == 0:
            self.save(loop)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        self.save(loop)

    def on_interrupt(self, loop: Loop) -> None:
        if loop.clean:
            self.save(loop)
