"""Recipe options: one small dataclass of typed defaults per recipe, read from ``Setup.options``.

``read_options`` fills one from the names a user gave (``--option l1-filter.pretrain_share=0.3``),
so a misspelt name or a value of the wrong type fails with the valid names instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_args, get_type_hints

from ..errors import ZigpruneError

OptionsT = TypeVar("OptionsT")


def read_options(kind: type[OptionsT], given: Mapping[str, Any]) -> OptionsT:
    """``given`` as the options dataclass ``kind``; an unknown name or a wrong type says what is valid."""
    names = [f.name for f in fields(kind)]
    unknown = [name for name in given if name not in names]
    if unknown:
        raise ZigpruneError(
            f"unknown option(s) {', '.join(unknown)}; valid names: {', '.join(names) or 'none'}"
        )
    hints = get_type_hints(kind)
    return kind(**{name: _typed(name, value, hints[name]) for name, value in given.items()})


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the option's type (a float option also takes an int); else a ZigpruneError."""
    allowed = get_args(hint) or (hint,)
    if isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
        return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = " or ".join(t.__name__ for t in allowed)
    raise ZigpruneError(f"option {name} must be {expected}, not {value!r}")


@dataclass(frozen=True)
class DenseOptions:
    """``dense``: ``note``, free text kept as the run's notes (tells apart otherwise identical runs)."""

    note: str | int | float = ""


@dataclass(frozen=True)
class PretrainOptions:
    """Recipes that pre-train before pruning: the share of the epoch budget spent pre-training."""

    pretrain_share: float = 0.5


@dataclass(frozen=True)
class PhasedOptions(PretrainOptions):
    """Pre-train, prune, fine-tune at ``fine_tune_lr`` × the peak learning rate (``tp-l2`` as is)."""

    fine_tune_lr: float = 0.1


@dataclass(frozen=True)
class PruneOnceOptions(PretrainOptions):
    """``l1-filter`` and ``random``: the allocator and the recovery of a one-shot prune."""

    allocator: str = "uniform"
    recovery: str = "fine-tune"


@dataclass(frozen=True)
class SlimmingOptions(PhasedOptions):
    """``slimming``: the BatchNorm-scale penalty λ and the allocator."""

    lmbda: float = 1e-4
    allocator: str = "global"


@dataclass(frozen=True)
class SFPOptions:
    """``sfp``: the allocator of every epoch end's zeroing."""

    allocator: str = "uniform"


@dataclass(frozen=True)
class TaylorOptions(PhasedOptions):
    """``taylor``: pruning events, the scores' moving-average momentum and the allocator."""

    events: int = 10
    momentum: float = 0.9
    allocator: str = "global"


@dataclass(frozen=True)
class OneCycleOptions:
    """``one-cycle``: pruning events along the ramp, allocator and criterion."""

    events: int = 20
    allocator: str = "cost-aware"
    criterion: str = "l2"


@dataclass(frozen=True)
class ScratchOptions:
    """``scratch`` and ``scratch-b``: the method whose architecture is trained anew."""

    source: str = "hesso"


@dataclass(frozen=True)
class MagnitudeOptions(PhasedOptions):
    """``magnitude``: the mask-growing events."""

    events: int = 10


@dataclass(frozen=True)
class LTHOptions:
    """``lth``: pruning rounds and the rewind point (share of the first segment)."""

    rounds: int = 3
    rewind_share: float = 0.05


@dataclass(frozen=True)
class GroupLassoOptions(PhasedOptions):
    """``tp-group-sl``: as ``tp-l2``, plus the group-lasso strength ``reg`` of the sparse-learning phase."""

    reg: float = 5e-4


@dataclass(frozen=True)
class SearchFirstOptions(PretrainOptions):
    """``search-hesso``: the strategy that searches the widths after pre-training, and the training
    images it scores and measures on."""

    strategy: str = "dp"
    calibration: int = 512
