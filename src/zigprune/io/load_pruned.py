"""``zp.load_pruned``: the slim model of a space, its weights read straight from the full checkpoint.

The space may belong to a model built on the meta device: the slim module is constructed there
(shapes only), then every tensor it holds is filled with the kept slices of the checkpoint's
tensor, one tensor at a time, so the full model is never in memory: only the slim one and one read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.construct import build, kept_indices
from ..core.space import GroupSpace
from ..errors import LoadError
from .checkpoint_reader import Checkpoint


def load_pruned(space: GroupSpace, checkpoint: str | Path | Checkpoint) -> nn.Module:
    """The slim model of ``space`` (its zeroed groups cut), with weights from ``checkpoint``.

    ``checkpoint`` is a ``.safetensors`` file, a folder with ``model.safetensors`` or a sharded
    folder with ``model.safetensors.index.json`` (a Hugging Face save), or a :class:`Checkpoint`;
    its names are the full model's ``state_dict`` names. Tensors are cast to the dtype the model
    declares. A tensor the checkpoint lacks keeps the model's value when it has one (a buffer built
    by the model's ``__init__``, a weight tied to one that is loaded); on the meta device it is an
    error, as is a checkpoint tensor whose shape differs from the model's.
    """
    weights = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)
    pruned = space.pruned_classes(space.zero_groups())
    cuts = kept_indices(space, pruned)
    full = dict(_named_tensors(space.model))
    slim = build(space, pruned)
    named = _named_tensors(slim)
    for name, _ in named:
        if name in weights:
            _check_shape(weights, name, full[name])
    kept = {name: t.detach().clone() for name, t in named if not t.is_meta and name not in weights}
    missing = [name for name, t in named if t.is_meta and name not in weights]
    if missing:
        raise LoadError(
            f"{weights.path} has no tensor {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + " and the meta-device model has no value for it; build the model with "
            "accelerate.init_empty_weights() (buffers stay real) or check the checkpoint's names"
        )
    slim.to_empty(device="cpu")  # new tensors: the names are listed again below
    with torch.no_grad():
        for name, tensor in _named_tensors(slim):
            value = weights.read(name, cuts.get(name, [])) if name in weights else kept.get(name)
            if value is not None:
                tensor.copy_(value.to(tensor.dtype))
    return slim


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and buffers by name, each shared tensor once (under its first name)."""
    return [*model.named_parameters(), *model.named_buffers()]


def _check_shape(weights: Checkpoint, name: str, expected: torch.Tensor) -> None:
    got = weights.shape(name)
    if got != tuple(expected.shape):
        raise LoadError(
            f"{weights.path}: tensor {name!r} has shape {list(got)} but the model's is "
            f"{list(expected.shape)}; the checkpoint is for a different configuration"
        )
