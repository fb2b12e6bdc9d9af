"""The parameters an optimizer owns: torch-style ``params`` checked against the space, the groups kept
whole because some of their rows lie in parameters it does not own, and the usual decay/no-decay split.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..core.grouping import Grouping
from ..core.space import GroupSpace
from ..errors import OptimizerError


def model_params(space: GroupSpace) -> list[nn.Parameter]:
    """The default ``params``: every parameter of the space's model that requires gradients."""
    return [p for p in space.model.parameters() if p.requires_grad]


def check_options(group: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse a param group with negative options or another base update than the optimizer's."""
    options = {**defaults, **group}
    for name in ("lr", "weight_decay", "momentum"):
        if name in options and not float(options[name]) >= 0:
            raise OptimizerError(f"{name} must be non-negative, not {options[name]}")
    if options["variant"] != defaults["variant"]:
        raise OptimizerError(
            f"a param group asks for variant={options['variant']!r}: the base update is the optimizer's "
            f"({defaults['variant']!r}); leave variant out of param groups"
        )


def check_in_model(space: GroupSpace, params: Iterable[torch.Tensor]) -> None:
    """Refuse tensors that are not parameters of ``space.model``: group terms could never reach them."""
    owned = {id(p) for p in space.model.parameters()}
    for tensor in params:
        if id(tensor) not in owned:
            raise OptimizerError(
                f"params holds a tensor of shape {tuple(tensor.shape)} that is not a parameter of "
                "space.model; pass parameters of the model the space was analysed from "
                "(e.g. space.model.parameters())"
            )


def frozen_groups(space: GroupSpace, grouping: Grouping, owned: Iterable[torch.Tensor]) -> torch.Tensor:
    """Groups with rows in parameters the optimizer does not own: kept whole (never chosen or zeroed).

    The optimizer changes only the parameters it was given, so a group it cannot zero in full stays;
    one warning names the parameters left out.
    """
    mine = {id(p) for p in owned}
    left_out = {id(p): 1.0 for p in grouping.params() if id(p) not in mine}
    frozen = grouping.row_mean(left_out) > 0 if left_out else torch.zeros(space.num_groups, dtype=torch.bool)
    if bool(frozen.any()):
        names = [n for n, p in space.model.named_parameters() if id(p) in left_out]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warnings.warn(
            f"zigprune: {int(frozen.sum())} of {space.num_groups} groups are kept whole: they have rows in "
            f"parameters the optimizer does not train ({', '.join(names[:3])}{more}); add those to params "
            "(e.g. with requires_grad=True) to let them be pruned",
            stacklevel=4,
        )
    return frozen


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer: BatchNorm, LayerNorm, GroupNorm, RMSNorm, look-alikes."""
    return "norm" in type(module).__name__.lower()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two param groups as the Hugging Face Trainer builds them: decay, and none on biases and norms.

    Biases and every parameter of a normalisation layer (``is_norm``) get ``weight_decay=0``; every
    other trainable parameter gets ``weight_decay``. Pass the list as ``params=`` to an optimizer.
    """
    no_decay = {
        id(p)
        for module in model.modules()
        for name, p in module.named_parameters(recurse=False)
        if is_norm(module) or name.endswith("bias")
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) in no_decay], "weight_decay": 0.0},
    ]
