"""The layers that read a group's channels as inputs (its *consumers*), seen as matrices.

A consumer is a module whose weight has a consumer slice in the space (its input dim is cut when a
group goes) and whose forward is a known matrix product, so that its input can be laid out as rows
``X [n, d]`` and its weight as ``W [out, d]`` with ``output = X Wᵀ (+ bias)``. A convolution's input
is unfolded into patches, so an input channel owns ``prod(kernel_size)`` columns. Post-training
methods measure groups on these layers and update their kept columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.space import GroupSpace


@dataclass(frozen=True)
class Adapter:
    """How one module type reads as ``X Wᵀ + b``: the weight dim of its inputs, rows, and weight views."""

    input_dim: int
    rows: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    output_dim: Callable[[nn.Module, torch.Tensor], int] = lambda module, out: out.dim() - 1
    kernel: Callable[[nn.Module], int] = lambda module: 1
    accepts: Callable[[nn.Module], bool] = lambda module: True
    transposed: bool = False

    def matrix(self, module: nn.Module) -> torch.Tensor:
        """The weight as ``[out, d]`` (a view where possible)."""
        weight = module.weight.detach()
        return weight.t() if self.transposed else weight.reshape(weight.shape[0], -1)

    def outputs(self, module: nn.Module) -> int:
        """Output channels: the rows of :meth:`matrix`."""
        weight = module.weight
        return int(weight.shape[1] if self.transposed else weight.shape[0])

    def assign(self, module: nn.Module, matrix: torch.Tensor) -> None:
        """Write ``[out, d]`` back into the weight, in its own layout and dtype."""
        weight = module.weight
        value = matrix.t() if self.transposed else matrix.reshape(weight.shape)
        weight.data.copy_(value.to(weight.dtype))


def _linear_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _conv_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patches of a 1d/2d convolution's input, one row per output position: ``[n · L, C · k]``."""
    one_d = isinstance(module, nn.Conv1d)
    if one_d:
        x = x.unsqueeze(-2)
    kernel = (1, *module.kernel_size) if one_d else module.kernel_size
    stride = (1, *module.stride) if one_d else module.stride
    dilation = (1, *module.dilation) if one_d else module.dilation
    padding = _padding(module, kernel, dilation, one_d)
    if any(padding):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, padding, mode=mode)
    patches = F.unfold(x, kernel, dilation=dilation, stride=stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _conv_channels(module: nn.Module, out: torch.Tensor) -> int:
    """The channel dim of a convolution's output: before its spatial dims (0 when unbatched)."""
    return out.dim() - len(module.kernel_size) - 1


def _kernel(module: nn.Module) -> int:
    return math.prod(module.kernel_size)


def _ungrouped(module: nn.Module) -> bool:
    return module.groups == 1


def _padding(module: nn.Module, kernel: tuple, dilation: tuple, one_d: bool) -> tuple[int, ...]:
    """``F.pad``'s (left, right, top, bottom) for the module's padding, ``"same"`` included."""
    if isinstance(module.padding, str):
        total = [d * (k - 1) for k, d in zip(kernel, dilation)] if module.padding == "same" else [0, 0]
        pairs = [(t // 2, t - t // 2) for t in total]
    else:
        pad = (0, *module.padding) if one_d else module.padding
        pairs = [(p, p) for p in pad]
    return tuple(n for pair in reversed(pairs) for n in pair)


ADAPTERS: dict[str, Adapter] = {
    "Linear": Adapter(1, _linear_rows),
    "Conv1d": Adapter(1, _conv_rows, _conv_channels, _kernel, _ungrouped),
    "Conv2d": Adapter(1, _conv_rows, _conv_channels, _kernel, _ungrouped),
    # Hugging Face's GPT-2 ``Conv1D``: ``x @ weight + bias`` with the weight stored as ``[in, out]``.
    "Conv1D": Adapter(0, _linear_rows, transposed=True),
}


def adapter_for(module: nn.Module) -> Adapter | None:
    """The adapter of the nearest class in ``module``'s type hierarchy that has one, if it applies."""
    for cls in type(module).__mro__:
        adapter = ADAPTERS.get(cls.__name__)
        if adapter is not None and cls.__module__.split(".")[0] in ("torch", "transformers"):
            return adapter if adapter.accepts(module) else None
    return None


@dataclass
class Consumer:
    """A layer that reads prunable channels: its columns' groups (-1: no group) and whether to update it.

    ``row_scale``: what an error in each output row weighs in the model's outputs (its mean squared
    gradient, ``sensitivity.output_sensitivity``), so errors of different layers compare.
    """

    name: str
    module: nn.Module
    adapter: Adapter
    column_group: torch.Tensor
    shared: bool
    row_scale: torch.Tensor | None = None

    @property
    def has_bias(self) -> bool:
        return getattr(self.module, "bias", None) is not None

    @property
    def width(self) -> int:
        """Columns of the layer's matrix, plus one for the bias when it has one."""
        return int(self.column_group.numel()) + int(self.has_bias)


def consumers(space: GroupSpace) -> list[Consumer]:
    """Every known layer whose input dim holds prunable groups, in the order of ``space.slices``.

    A weight that is also used elsewhere (tied to another module's) is measured but never updated:
    an update would change the other use too.
    """
    model = space.model
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    found = []
    for s in space.slices:
        path, _, leaf = s.name.rpartition(".")
        if s.producer or leaf != "weight":
            continue
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        adapter = adapter_for(module)
        if adapter is None or s.dim != adapter.input_dim:
            continue
        groups = space.class_group[s.classes]
        if not bool((groups >= 0).any()):
            continue
        shared = len(names.get(id(module.weight), [])) > 1
        found.append(
            Consumer(path, module, adapter, groups.repeat_interleave(adapter.kernel(module)), shared)
        )
    return found
