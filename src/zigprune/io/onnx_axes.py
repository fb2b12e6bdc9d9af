"""Which axes of the example inputs an ONNX export leaves dynamic, as Hugging Face Optimum does.

Every tensor input has a batch axis (dim 0). A token input (an integer or boolean tensor of rank 2:
``input_ids``, ``attention_mask``, ``token_type_ids``, ``position_ids`` …) also has a sequence axis
(dim 1); token inputs of the same example length share one. Images keep their spatial axes fixed by
default: many vision models (patch embeddings, fixed position tables, flattening heads) only run at
their training size. ``dynamic_axes`` names other axes explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import ExportError

Axes = dict[int, str]
"""The dynamic axes of one tensor input: axis → dimension name (axes with one name share one size)."""

BATCH = "batch"
SEQUENCE = "sequence"


def is_tokens(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` looks like token ids or a token mask: integer or boolean, (batch, sequence)."""
    return tensor.dim() == 2 and not tensor.is_floating_point() and not tensor.is_complex()


def inferred_axes(tensors: list[torch.Tensor]) -> list[Axes]:
    """The batch axis of every tensor, and the sequence axis (longer than 1) of every token input."""
    sequences: dict[int, str] = {}
    found = []
    for tensor in tensors:
        if tensor.dim() == 0:
            raise ExportError("a scalar input has no batch dimension; export with dynamic_batch=False")
        axes = {0: BATCH}
        if is_tokens(tensor) and tensor.shape[1] > 1:
            length = int(tensor.shape[1])
            axes[1] = sequences.setdefault(length, f"{SEQUENCE}_{len(sequences)}" if sequences else SEQUENCE)
        found.append(axes)
    return found


def dynamic_axes(
    names: list[str],
    tensors: list[torch.Tensor],
    dynamic_batch: bool,
    given: Mapping[str, Mapping[int, str]] | None,
) -> list[Axes]:
    """Per tensor input, its dynamic axes: inferred (with ``dynamic_batch``), and replaced by ``given``
    for the inputs it names."""
    axes = inferred_axes(tensors) if dynamic_batch else [{} for _ in tensors]
    for name, chosen in (given or {}).items():
        if name not in names:
            raise ExportError(
                f"dynamic_axes names {name!r}, which is not a tensor input; the inputs are {', '.join(names)}"
            )
        tensor = tensors[names.index(name)]
        for axis, dim in dict(chosen).items():
            if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < tensor.dim():
                raise ExportError(
                    f"dynamic_axes[{name!r}] has axis {axis!r}, but {name} has {tensor.dim()} axes; give "
                    f"axes from 0 to {tensor.dim() - 1}"
                )
            if not isinstance(dim, str) or not dim.isidentifier():
                raise ExportError(
                    f"dynamic_axes[{name!r}][{axis}] is {dim!r}; name each dimension with a Python "
                    "identifier such as 'batch' or 'height'"
                )
        axes[names.index(name)] = dict(chosen)
    return axes


def grow(tensors: list[torch.Tensor], axes: list[Axes], dim: str) -> list[torch.Tensor]:
    """The same inputs one longer along every axis named ``dim`` (a copy of the last slice appended)."""
    grown = []
    for tensor, named in zip(tensors, axes):
        for axis, name in named.items():
            if name == dim:
                tensor = torch.cat([tensor, tensor.narrow(axis, tensor.shape[axis] - 1, 1)], dim=axis)
        grown.append(tensor)
    return grown


def dims(axes: list[Axes]) -> list[str]:
    """The dimension names in ``axes``, in order of first appearance."""
    return list(dict.fromkeys(name for named in axes for name in named.values()))


def size_of(tensors: list[torch.Tensor], axes: list[Axes], dim: str) -> int:
    """The size of the first axis named ``dim``."""
    return next(int(t.shape[a]) for t, named in zip(tensors, axes) for a, n in named.items() if n == dim)
