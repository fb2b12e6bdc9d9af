"""A search's budget: what the slim model may cost, as a share of the dense model's or a factor."""

from __future__ import annotations

from typing import Any

from ..core.selection import Target, goal, least_left, parse_number, total_cost
from ..core.space import GroupSpace
from ..errors import TargetError

KINDS = ("macs", "params")
HELP = "macs=0.5 (keep half the MACs), params=0.4 or macs=2x (a factor)"


def parse_budget(text: str | float, **options: Any) -> Target:
    """``macs=0.5`` or ``params=0.4``: the share of the dense model's cost the slim model may keep;
    ``macs=2x``: a reduction factor; a bare number or factor is MACs. ``options`` (``round_to``,
    ``limits``; None keeps the Target's default) go to the :class:`Target` it becomes."""
    kind, _, value = str(text).strip().rpartition("=")
    kind = kind.strip().lower() or "macs"
    if kind == "latency":
        raise TargetError(f"latency budgets (latency=0.3@onnxruntime-int8) are not searched yet; use {HELP}")
    if kind not in KINDS:
        raise TargetError(f"budget kind {kind!r} is not macs or params; use {HELP}")
    number, factor = parse_number(value)
    keep = 1 / number if factor and number > 1 else number
    if not 0 < keep < 1 or (factor and number <= 1):
        raise TargetError(f"budget {text!r} keeps nothing or everything; use {HELP}")
    return Target(1 - keep, kind, **{k: v for k, v in options.items() if v is not None})


def check_budget(space: GroupSpace, target: Target) -> None:
    """A TargetError, before any scoring, when even every removable unit leaves more than the budget."""
    left = least_left(space, target)
    if left > goal(space, target):
        raise beyond(space, target, left)


def beyond(space: GroupSpace, target: Target, left: float) -> TargetError:
    """The error for a budget below ``left``, the least cost the slim model can have, saying how much."""
    share = left / max(total_cost(space, target.by), 1)
    return TargetError(
        f"the budget keeps {1 - target.fraction:.1%} of the {target.by}, but the slim model keeps at least "
        f"{share:.1%} (unprunable channels, one channel or round_to of them per layer, the limits given): "
        f"ask for {target.by}={share + 0.0005:.3f} or more"
    )
