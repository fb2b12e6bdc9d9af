"""A weight-shared model on disk: ``.safetensors`` with, per shared layer, its codebook and its codes
packed ``bits`` to a byte, and every other tensor as it is. Read without unpickling anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import LoadError, first_line
from ..io.atomic import atomic_write
from .sharing import SharedLayer, Sharing

FORMAT = "zigprune-shared-weights"
CODEBOOK, CODES = ".weight.codebook", ".weight.codes"


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes below ``2**bits`` packed ``bits`` each, least significant bit first, into uint8."""
    flat = codes.flatten().numpy().astype(np.uint8)
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The ``count`` codes ``pack`` wrote, as int64."""
    planes = np.unpackbits(packed.numpy(), count=count * bits, bitorder="little").reshape(count, bits)
    return torch.from_numpy(planes.astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64)))


def save_shared(model: nn.Module, sharing: Sharing, path: str | os.PathLike) -> Path:
    """Write ``model`` with its shared layers as codebook + packed codes to ``path``, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    shapes = {}
    for name, layer in sharing.layers.items():
        del state[f"{name}.weight"]
        state[name + CODEBOOK] = layer.codebook.contiguous()
        state[name + CODES] = pack(layer.codes, sharing.bits)
        shapes[name] = list(layer.codes.shape)
    metadata = {"format": FORMAT, "bits": str(sharing.bits), "shapes": json.dumps(shapes)}
    return atomic_write(path, lambda temp: save_file(state, str(temp), metadata=metadata))


def load_shared(model: nn.Module, path: str | os.PathLike) -> Sharing:
    """Load a file ``save_shared`` wrote into ``model`` (same architecture), returning its codebooks."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise LoadError(f"{path} is not a readable .safetensors file ({first_line(err)})") from None
    if metadata.get("format") != FORMAT:
        raise LoadError(f"{path} is not a weight-shared model (no {FORMAT!r} metadata); use zp.load for runs")
    bits, shapes = int(metadata["bits"]), json.loads(metadata["shapes"])
    layers = {}
    for name, shape in shapes.items():
        codes = unpack(state.pop(name + CODES), bits, int(np.prod(shape))).reshape(shape)
        layers[name] = SharedLayer(state.pop(name + CODEBOOK), codes)
        state[f"{name}.weight"] = layers[name].values()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise LoadError(
            f"{path} does not fit the model ({first_line(err)}); pass the model it was saved from"
        ) from None
    return Sharing(bits, layers)
