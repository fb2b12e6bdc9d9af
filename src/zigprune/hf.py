"""Hugging Face ``Trainer`` support: the pruning schedule from the Trainer's step count, and its param groups.

``PruningCallback`` sets a zigprune optimizer's ``total_steps`` from ``state.max_steps`` when training
begins, so the schedule fits the run however its length was given (epochs, ``max_steps``, gradient
accumulation, several devices). ``decay_groups`` builds the Trainer's decay / no-decay param groups.
``transformers`` is an optional extra (``pip install 'zigprune[hf]'``), imported only when
``PruningCallback`` is first used.
"""

from __future__ import annotations

from typing import Any

from .errors import OptimizerError
from .optim.base import GroupOptimizer
from .optim.params import decay_groups

__all__ = ["PruningCallback", "decay_groups", "group_optimizer"]  # noqa: F822 (PruningCallback: __getattr__)


def group_optimizer(optimizer: Any) -> GroupOptimizer:
    """The zigprune optimizer in ``optimizer``, unwrapping ``.optimizer`` (accelerate wraps the Trainer's)."""
    inner = optimizer
    while not isinstance(inner, GroupOptimizer) and hasattr(inner, "optimizer"):
        inner = inner.optimizer
    if not isinstance(inner, GroupOptimizer):
        raise OptimizerError(
            f"PruningCallback needs a zigprune optimizer (zp.HESSO, zp.DHSPG or zp.HSPG), not "
            f"{type(optimizer).__name__}: pass it as Trainer(..., optimizers=(opt, None))"
        )
    return inner


def _callback_class() -> type:
    """Define ``PruningCallback`` on ``transformers.TrainerCallback`` (imported here, on first use)."""
    try:
        from transformers import TrainerCallback
    except ImportError as err:
        raise ImportError(
            "zigprune.hf.PruningCallback needs transformers: pip install 'zigprune[hf]'"
        ) from err

    class PruningCallback(TrainerCallback):
        """Sets the optimizer's schedule from the Trainer's ``state.max_steps`` at ``on_train_begin``.

        ``optimizer`` is the zigprune optimizer (by default the Trainer's); make it with
        ``total_steps=None``. A resumed run keeps its saved total; a different one is an error.
        """

        def __init__(self, optimizer: GroupOptimizer | None = None) -> None:
            self.optimizer = optimizer

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            chosen = self.optimizer if self.optimizer is not None else kwargs.get("optimizer")
            group_optimizer(chosen).set_total_steps(int(state.max_steps))

    PruningCallback.__module__, PruningCallback.__qualname__ = __name__, "PruningCallback"
    return PruningCallback


_DEFINED: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name != "PruningCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _DEFINED:
        _DEFINED[name] = _callback_class()
    return _DEFINED[name]
