"""zigprune: train once, get a physically smaller PyTorch model with the same outputs."""

from __future__ import annotations

from typing import Any

from torch import nn

from .analysis import analyze_model
from .errors import ConstructionError, ExampleInputError, TraceError, ZigpruneError
from .io import export_onnx, load, save
from .measure import count
from .optim import DHSPG, HESSO, HSPG
from .space import Family, GroupSpace

__version__ = "0.1.0"


def analyze(model: nn.Module, example_inputs: Any, check: bool = True) -> GroupSpace:
    """Find the zero-invariant groups of ``model``.

    ``example_inputs`` is a Tensor, a tuple of positional arguments, or a dict of keyword arguments.
    With ``check`` (default), a copy of the model has half of every family's groups zeroed and is
    constructed; families whose construction does not reproduce the outputs are made unprunable.
    """
    from .construct import probe

    store, root, inputs = analyze_model(model, example_inputs)
    space = GroupSpace(model, inputs, store, root)
    if check:
        broken = probe(space)
        if broken:
            space.drop_families(broken, "the slim model did not match in the construction check")
    return space


__all__ = [
    "DHSPG", "HESSO", "HSPG", "ConstructionError", "ExampleInputError", "Family", "GroupSpace", "TraceError",
    "ZigpruneError", "analyze", "count", "export_onnx", "load", "save",
]  # fmt: skip
