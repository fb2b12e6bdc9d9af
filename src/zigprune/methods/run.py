"""What a recipe gets (``Setup``), what it returns (``Outcome``), and ``Trainer``, its phases of training.

Every phase is an ordinary ``zigprune.training.train`` run (SGD with momentum and weight decay, a
per-step cosine schedule from the phase's peak learning rate to 0), and the trainer counts the
epochs of every phase so each recipe's total can be checked against the shared budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ..core.selection import Target
from ..errors import ZigpruneError
from ..training import Hook, steps_per_epoch, train
from .options import OptionsT, read_options

PHASE_SEED_STRIDE = 101


@dataclass(kw_only=True)
class Training:
    """How every method of a bench trains: ``epochs`` of ``batch_size`` samples, SGD (``lr``,
    ``momentum``, ``weight_decay``) on a per-step cosine schedule, with or without progress bars and a
    test evaluation each epoch. The bench's ``Settings`` and each run's ``Setup`` share it."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    progress: bool = False
    epoch_eval: bool = False

    def training(self) -> dict[str, Any]:
        """These fields by name, to pass on to another ``Training``."""
        return {f.name: getattr(self, f.name) for f in fields(Training)}


@dataclass
class Setup(Training):
    """The shared conditions of one (method, seed) run: model, data, MACs target, epoch budget, recipe.

    ``build()`` returns a freshly initialised model, identical for every method of the seed.
    ``options`` overrides a recipe's hyper-parameters by name (``read`` checks them);
    ``architecture(method)`` returns the group ids another method removed for this seed (``scratch``
    trains that architecture anew).
    """

    build: Callable[[], nn.Module]
    data: Any
    example: torch.Tensor
    target: Target
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    architecture: Callable[[str], list[int]] | None = None

    def read(self, kind: type[OptionsT]) -> OptionsT:
        """The recipe's options as ``kind`` (a dataclass of typed defaults), filled from ``options``."""
        return read_options(kind, self.options)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of the training set."""
        return steps_per_epoch(len(self.data.train), self.batch_size)


@dataclass
class Outcome:
    """A recipe's result: the final model, the groups it removed, epochs spent and per-epoch history.

    ``theoretical`` holds ``{"macs", "params"}`` for unstructured methods, whose model keeps its dense
    shape (zeros only): their costs count nonzero weights and need sparse kernels to be real.
    """

    model: nn.Module
    pruned: list[int]
    epochs: int
    history: list[dict[str, float | str]]
    theoretical: dict[str, int] | None = None
    notes: str = ""


class Trainer:
    """Runs a recipe's phases under one ``Setup`` and records their epochs and history."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.epochs = 0
        self.phases = 0
        self.history: list[dict[str, float | str]] = []

    def optimizer(self, model: nn.Module, lr: float | None = None, weight_decay: float | None = None):
        """SGD with the setup's momentum and weight decay (both overridable) at peak ``lr``."""
        s = self.setup
        return torch.optim.SGD(
            model.parameters(),
            lr=s.lr if lr is None else lr,
            momentum=s.momentum,
            weight_decay=s.weight_decay if weight_decay is None else weight_decay,
        )

    def fit(
        self,
        model: nn.Module,
        epochs: int,
        phase: str,
        hooks: Sequence[Hook] = (),
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        postfix: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        """Train ``model`` for ``epochs`` (nothing for 0) with a per-step cosine schedule; count them."""
        if epochs < 0:
            raise ZigpruneError(
                f"a phase cannot last {epochs} epochs; the budget is too small for this recipe"
            )
        if epochs == 0:
            return
        s = self.setup
        optimizer = optimizer or self.optimizer(model, lr)
        history = train(
            model,
            optimizer,
            s.data.train,
            epochs=epochs,
            batch_size=s.batch_size,
            scheduler="cosine",
            augment=s.data.augment,
            hooks=hooks,
            seed=s.seed * PHASE_SEED_STRIDE + self.phases,
            progress=s.progress,
            test_set=s.data.test if s.epoch_eval else None,
            postfix=postfix,
            catch_signals=False,
            desc=phase,
        )
        for row in history.epochs:
            self.history.append({**row, "epoch": self.epochs + int(row["epoch"]), "phase": phase})
        self.epochs += epochs
        self.phases += 1

    def outcome(self, model: nn.Module, pruned: list[int], **extra: Any) -> Outcome:
        """The recipe's ``Outcome`` with the epochs and history recorded so far."""
        return Outcome(model, pruned, self.epochs, self.history, **extra)


def split(epochs: int, share: float) -> tuple[int, int]:
    """Cut a budget into a first phase of about ``share`` and a second phase of at least one epoch."""
    first = min(max(round(epochs * share), 0), epochs - 1)
    return first, epochs - first
