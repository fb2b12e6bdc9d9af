"""Recovery: what the retraining phase after pruning starts from (weights, learning rate, epochs).

``fine-tune`` keeps the pruned weights with a small learning rate (Li et al.); ``weight-rewind``
resets the survivors to an early snapshot and replays the schedule (lottery tickets, Frankle et
al.); ``lr-rewind`` keeps the weights but replays the original schedule (Renda et al.);
``scratch-e``/``scratch-b`` re-initialise the found architecture and train it for the same epochs or
the same compute (Liu et al., "Rethinking the Value of Network Pruning").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ZigpruneError
from ..registry import Registry

FINE_TUNE_LR = 0.1


@dataclass
class Retrain:
    """The retraining phase: the model to train, its peak learning rate and its epochs."""

    model: nn.Module
    lr: float
    epochs: int


@dataclass
class Found:
    """What pruning left: the model, the early snapshot (if any), and MACs before/after."""

    model: nn.Module
    lr: float
    epochs: int
    snapshot: dict[str, torch.Tensor] | None = None
    dense_macs: int = 1
    macs: int = 1
    seed: int = 0


@torch.no_grad()
def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Fresh weights for every module with ``reset_parameters`` (BatchNorm statistics too), in place."""
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


@torch.no_grad()
def rewind(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> nn.Module:
    """Load the early ``snapshot`` into ``model`` in place (callers re-apply their masks afterwards)."""
    model.load_state_dict(snapshot)
    return model


def fine_tune(found: Found) -> Retrain:
    """Keep the pruned weights; retrain at a tenth of the peak learning rate."""
    return Retrain(found.model, found.lr * FINE_TUNE_LR, found.epochs)


def weight_rewind(found: Found) -> Retrain:
    """Rewind the weights to the early snapshot; replay the full schedule."""
    if found.snapshot is None:
        raise ZigpruneError(
            "weight rewinding needs an early snapshot: add a Snapshot hook to the first phase"
        )
    return Retrain(rewind(found.model, found.snapshot), found.lr, found.epochs)


def lr_rewind(found: Found) -> Retrain:
    """Keep the pruned weights; replay the full schedule from its peak."""
    return Retrain(found.model, found.lr, found.epochs)


def scratch_e(found: Found) -> Retrain:
    """Re-initialise the found architecture; train it for the same epochs."""
    return Retrain(reinitialise(found.model, found.seed), found.lr, found.epochs)


def scratch_b(found: Found) -> Retrain:
    """Re-initialise; train for the dense model's compute (epochs × dense/slim MACs)."""
    epochs = math.ceil(found.epochs * found.dense_macs / max(found.macs, 1))
    return Retrain(reinitialise(found.model, found.seed), found.lr, epochs)


RECOVERIES: Registry[Callable[[Found], Retrain]] = Registry(
    "recovery",
    {
        "fine-tune": fine_tune,
        "weight-rewind": weight_rewind,
        "lr-rewind": lr_rewind,
        "scratch-e": scratch_e,
        "scratch-b": scratch_b,
    },
)


def recover(name: str, found: Found) -> Retrain:
    """Prepare the retraining phase with the recovery registered as ``name`` (``RECOVERIES``)."""
    return RECOVERIES[name](found)
