"""Does the data fit the model? A run whose dataset yields another kind of input than the model takes
(images for a text model, token ids for an image model) is refused before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import data
from ..errors import DataError
from ..models.spec import ModelSpec

KNOWN_INPUTS = ("zoo", "hf")
"""Spec kinds whose example inputs are known before the model is built (factories need a shape)."""


@dataclass(frozen=True)
class Modality:
    """A kind of model input, as a one-line error names it."""

    data: str
    model: str
    takes: str
    fitting: str


MODALITIES = {
    "text": Modality(
        "text data", "a text model", "token ids", "a text dataset, e.g. --data text:python-docs"
    ),
    "image": Modality("image data", "an image model", "float inputs", "an image dataset, e.g. --data digits"),
}


def modality(tensor: torch.Tensor) -> str:
    """``"text"`` for token ids (integers), ``"image"`` for floating-point inputs (pixels, features)."""
    return "image" if tensor.is_floating_point() else "text"


def _first_tensor(value: Any) -> tuple[str | None, torch.Tensor | None]:
    """The first tensor of a sample or example (and its keyword, for dicts of keyword arguments)."""
    if isinstance(value, dict):
        return next(((k, v) for k, v in value.items() if isinstance(v, torch.Tensor)), (None, None))
    if isinstance(value, (tuple, list)):
        return _first_tensor(value[0]) if value else (None, None)
    return None, value if isinstance(value, torch.Tensor) else None


def check_fits(spec: ModelSpec, dataset: data.Dataset) -> None:
    """A DataError naming the data that fits, unless ``dataset`` yields the kind of input ``spec``'s model
    takes (no opinion on factories, whose inputs are only known once built)."""
    if spec.kind not in KNOWN_INPUTS or len(dataset.train) == 0:
        return
    name, example = _first_tensor(spec.example_inputs(1))
    _, sample = _first_tensor(dataset.train[0])
    if example is None or sample is None:
        return
    wants, gives = modality(example), modality(sample)
    if wants != gives:
        model, got = MODALITIES[wants], MODALITIES[gives]
        raise DataError(
            f"{got.data} ({dataset.name}) does not fit {model.model} (it takes {name or model.takes}); "
            f"give {model.fitting}"
        )
