"""Example inputs as JSON: recorded by shape, dtype and integer range, remade deterministically."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.trace import Inputs
from ..errors import ModelError


def _describe_value(value: Any) -> dict[str, Any]:
    """A tensor as shape/dtype (and value range for integers); JSON scalars as themselves."""
    if isinstance(value, torch.Tensor):
        item: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        if not value.is_floating_point() and not value.is_complex():
            empty = value.numel() == 0
            item["low"] = 0 if empty else int(value.min())
            item["high"] = 1 if empty else int(value.max()) + 1
        return item
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    raise ModelError(
        f"cannot record an example input of type {type(value).__name__}; pass tensors or plain numbers/text"
    )


def describe_inputs(inputs: Inputs) -> dict[str, Any]:
    """How to remake inputs like ``inputs``: kind (tensor/tuple/dict), and every argument's description."""
    tensor_kwargs = any(isinstance(v, torch.Tensor) for v in inputs.kwargs.values())
    single = len(inputs.args) == 1 and isinstance(inputs.args[0], torch.Tensor) and not tensor_kwargs
    kind = "tensor" if single else "dict" if not inputs.args else "tuple"
    return {
        "kind": kind,
        "args": [_describe_value(v) for v in inputs.args],
        "kwargs": {k: _describe_value(v) for k, v in inputs.kwargs.items()},
    }


def make_inputs(description: dict[str, Any]) -> Inputs:
    """Deterministic inputs from :func:`describe_inputs`' record: seeded normals, integers in their range."""
    generator = torch.Generator().manual_seed(0)

    def make(item: dict[str, Any]) -> Any:
        if "value" in item:
            return item["value"]
        dtype = getattr(torch, item["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {item['dtype']!r}")
        shape = tuple(int(n) for n in item["shape"])
        if dtype.is_floating_point:
            return torch.randn(shape, generator=generator).to(dtype)
        return torch.randint(int(item["low"]), int(item["high"]), shape, generator=generator).to(dtype)

    args = tuple(make(item) for item in description["args"])
    return Inputs(args, {str(k): make(item) for k, item in description["kwargs"].items()})


def matching(inputs: Inputs, model: nn.Module) -> Inputs:
    """``inputs`` on the model's device, floating tensors in its floating dtype (e.g. a bfloat16 model)."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)

    def move(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        return v.to(device, dtype if dtype is not None and v.is_floating_point() else v.dtype)

    return Inputs(tuple(move(v) for v in inputs.args), {k: move(v) for k, v in inputs.kwargs.items()})
