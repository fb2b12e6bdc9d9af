"""Int8 as ONNX Runtime's static QDQ computes it, simulated in torch: a weight layer's weights rounded
to int8 per output channel (symmetric), its input to int8 over the range it has (asymmetric, per
tensor). A mixed-precision search measures with it what keeping a layer in fp32 buys, without
exporting and quantizing a file per candidate."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator

import torch
from torch import nn


@contextlib.contextmanager
def fake_int8(model: nn.Module, layers: Collection[str]) -> Iterator[None]:
    """Run the modules of ``model`` named in ``layers`` as int8 for the duration of the block; every
    weight is restored after."""
    modules = dict(model.named_modules())
    saved, hooks = [], []
    with torch.no_grad():
        for name in layers:
            module = modules[name]
            saved.append((module.weight, module.weight.detach().clone()))
            module.weight.copy_(int8_weights(module.weight))
            hooks.append(module.register_forward_pre_hook(_int8_input))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():
            for weight, values in saved:
                weight.copy_(values)


def int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` rounded to 255 symmetric levels per output channel (dim 0)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = (flat.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12)
    return ((flat / scale).round().clamp(-127, 127) * scale).reshape(weight.shape)


def int8_activations(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to 256 levels spanning its range and zero (ORT's asymmetric int8 activations)."""
    low, high = min(float(x.detach().min()), 0.0), max(float(x.detach().max()), 0.0)
    scale = max((high - low) / 255, 1e-12)
    zero = round(-128 - low / scale)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, -128, 127)


def _int8_input(module: nn.Module, args: tuple) -> tuple:
    first = args[0]
    if isinstance(first, torch.Tensor) and first.is_floating_point():
        return (int8_activations(first), *args[1:])
    return args
