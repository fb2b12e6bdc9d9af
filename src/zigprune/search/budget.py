"""A search's budget: what the slim model may cost, as a share of the dense model's or a factor, in
MACs, params, or latency measured on a runtime (``latency=0.3@onnxruntime-int8``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.selection import KINDS as TARGET_KINDS
from ..core.selection import Target, least_left, parse_number, total_cost
from ..core.space import GroupSpace
from ..deploy.runtimes import RUNTIMES
from ..errors import TargetError

KINDS = ("macs", "params", "latency")
HELP = (
    "macs=0.5 (keep half the MACs), params=0.4, macs=2x (a factor) or latency=0.3@onnxruntime "
    f"(a share of the dense model's time on one of {', '.join(RUNTIMES)})"
)


@dataclass(frozen=True)
class Budget:
    """The share of the dense model's ``kind`` (``macs``, ``params`` or ``latency`` on ``runtime``) the
    slim model may keep."""

    kind: str
    keep: float
    runtime: str | None = None

    @property
    def what(self) -> str:
        """The budget's cost in words: ``macs``, or ``latency on onnxruntime``."""
        return f"latency on {self.runtime}" if self.runtime else self.kind

    def spell(self, keep: float) -> str:
        """The budget text that keeps ``keep`` of the same cost."""
        return f"{self.kind}={keep:.3f}" + (f"@{self.runtime}" if self.runtime else "")

    def target(self, **options: Any) -> Target:
        """The :class:`Target` whose units a search walks (``round_to``, ``limits``, ``cost_power``,
        ``cost``; None keeps the default); latency budgets count MACs in it, and only its units matter."""
        by = self.kind if self.kind in TARGET_KINDS else "macs"
        return Target(1 - self.keep, by, **{k: v for k, v in options.items() if v is not None})


def parse_budget(text: str | float) -> Budget:
    """``macs=0.5``, ``params=0.4`` or ``latency=0.3@onnxruntime-int8``: the share of the dense model's
    cost the slim model may keep; ``macs=2x``: a reduction factor; a bare number or factor is MACs;
    a latency budget without ``@runtime`` is timed in eager torch."""
    kind, _, value = str(text).strip().rpartition("=")
    kind = kind.strip().lower() or "macs"
    value, _, runtime = value.partition("@")
    if kind not in KINDS:
        raise TargetError(f"budget kind {kind!r} is not macs, params or latency; use {HELP}")
    if runtime and kind != "latency":
        raise TargetError(f"only latency budgets name a runtime (@{runtime}); use {HELP}")
    if kind == "latency":
        runtime = RUNTIMES.check(runtime.strip().lower() or "torch")
    number, factor = parse_number(value)
    keep = 1 / number if factor and number > 1 else number
    if not 0 < keep < 1 or (factor and number <= 1):
        raise TargetError(f"budget {text!r} keeps nothing or everything; use {HELP}")
    return Budget(kind, keep, runtime or None)


def budget_list(text: str) -> list[str]:
    """Several budgets, comma-separated: full budgets (``macs=0.5,params=0.4``), or bare shares and
    factors after one that names its kind, which they share with its runtime, wherever in the run it
    is written (``macs=0.4,0.5,0.6``, ``latency=0.4,0.6@onnxruntime``); each checked by
    :func:`parse_budget`, in order, repeats dropped."""
    pieces = [piece.strip() for piece in str(text).split(",")]
    if not all(pieces):
        raise TargetError(f"budget {text!r} has an empty item; use {HELP}, or several joined by commas")
    runs: list[list[str]] = []
    for piece in pieces:
        if "=" in piece or not runs:
            runs.append([])
        runs[-1].append(piece)
    found: list[str] = []
    for run in runs:
        kind = run[0].rpartition("=")[0].strip() or "macs"
        runtime = next((p.partition("@")[2].strip() for p in run if "@" in p), "")
        for piece in run:
            value = piece.rpartition("=")[2].partition("@")[0].strip()
            spelled = f"{kind}={value}" + (f"@{runtime}" if runtime else "")
            parse_budget(spelled)
            if spelled not in found:
                found.append(spelled)
    return found


def beyond(budget: Budget, share: float) -> TargetError:
    """The error for a budget below ``share``, the least the slim model can keep, saying how much."""
    if budget.kind == "latency":
        why = "as the latency table, calibrated on the runtime, predicts: narrower is not always faster"
    else:
        why = "unprunable channels, one channel or round_to of them per layer, the limits given"
    return TargetError(
        f"the budget keeps {budget.keep:.1%} of the {budget.what}, but the slim model keeps at least "
        f"{share:.1%} ({why}): ask for {budget.spell(share + 0.0005)} or more"
    )


def check_budget(space: GroupSpace, budget: Budget, target: Target) -> None:
    """A TargetError, before any scoring, when even every removable unit leaves more MACs or params
    than the budget. (Latency is not checked so: a narrower layer can be slower on a runtime, and the
    solvers say what they could reach.)"""
    if budget.kind == "latency":
        return
    left = least_left(space, target)
    if left > total_cost(space, target.by) * budget.keep:
        raise beyond(budget, left / max(total_cost(space, target.by), 1e-12))
