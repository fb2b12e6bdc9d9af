"""One factory of the group-sparse optimizers by name, for compress, the bench recipes and the benchmarks."""

from __future__ import annotations

from typing import Any

from ..core.selection import Target
from ..core.space import GroupSpace
from ..errors import OptimizerError
from ..registry import Registry
from .base import GroupOptimizer, TargetedOptimizer
from .dhspg import DHSPG
from .hesso import HESSO
from .hspg import HSPG

OPTIMIZERS: Registry[type[GroupOptimizer]] = Registry(
    "optimizer", {"hesso": HESSO, "dhspg": DHSPG, "hspg": HSPG}, OptimizerError
)


def optimizer_class(name: str) -> type[GroupOptimizer]:
    """The optimizer registered as ``name`` (``OPTIMIZERS``), or an ``OptimizerError`` listing them."""
    return OPTIMIZERS[name]


def targeted(name: str) -> bool:
    """Whether optimizer ``name`` reaches an explicit target (HESSO, DHSPG) rather than a penalty's (HSPG)."""
    return issubclass(optimizer_class(name), TargetedOptimizer)


def make(
    name: str,
    space: GroupSpace,
    *,
    lr: float,
    total_steps: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    target: float | Target | None = None,
    **options: Any,
) -> GroupOptimizer:
    """Optimizer ``name`` over ``space``; ``options`` are its other keywords (e.g. ``periods``, ``lmbda``).

    HESSO and DHSPG need ``target`` (a ``Target``, or a fraction with ``by=`` … in ``options``);
    HSPG has none and refuses one, so a target is never silently ignored.
    """
    cls = optimizer_class(name)
    if targeted(name) and target is None:
        raise OptimizerError(f"{name} removes an explicit target: give target=, e.g. Target(0.5, 'macs')")
    if not targeted(name) and target is not None:
        valid = ", ".join(n for n in OPTIMIZERS if targeted(n))
        raise OptimizerError(f"{name} has no target (it removes what its penalty zeroes); use {valid}")
    if target is not None:
        options["target"] = target
    return cls(space, lr=lr, momentum=momentum, weight_decay=weight_decay, total_steps=total_steps, **options)
