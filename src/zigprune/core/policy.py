"""A compression policy: how many groups each family keeps, piece by piece (the widths a search
chose), saved as JSON and applied by ``zp.prune(space, calibration, policy=policy)``, which picks
*which* groups go inside each family by its method's scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import PolicyError

if TYPE_CHECKING:
    from .space import GroupSpace, Piece

FORMAT = "zigprune-policy/1"
PRECISIONS = ("int8", "fp32")


@dataclass(frozen=True)
class FamilyWidth:
    """One family's kept groups per piece (``kept``) out of its groups per piece (``width``)."""

    index: int
    name: str
    width: list[int]
    kept: list[int]


@dataclass
class Policy:
    """Kept groups per family (and piece), the budget and strategy that chose them, and what the search
    predicted for them (``error``: the summed calibration error; ``macs``, ``params`` or ``latency``
    left) and, for a latency budget, measured (``ms``, ``share`` of the dense time, ``off``: how far the
    prediction was from it, relative). On an int8 runtime, ``precision`` gives each Conv and Linear
    layer (by module name) ``"int8"`` or ``"fp32"``: the layers the quantized file keeps in float."""

    families: list[FamilyWidth]
    budget: str = ""
    strategy: str = ""
    predicted: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wrong = {name: p for name, p in self.precision.items() if p not in PRECISIONS}
        if wrong:
            name, value = next(iter(wrong.items()))
            raise PolicyError(f"layer {name} has precision {value!r}; use one of {', '.join(PRECISIONS)}")

    @property
    def fp32_layers(self) -> list[str]:
        """The layers an int8 file of this policy keeps in fp32."""
        return sorted(name for name, p in self.precision.items() if p == "fp32")

    @classmethod
    def of(cls, space: GroupSpace, removed: torch.Tensor, **about: Any) -> Policy:
        """The widths ``space`` has once the groups in ``removed`` (a bool mask) are gone."""
        gone = removed.tolist()
        families = [
            FamilyWidth(f.index, f.name, [p.width for p in f.pieces], [_kept(p, gone) for p in f.pieces])
            for f in space.families
            if f.groups
        ]
        return cls(families, **about)

    def check(self, space: GroupSpace) -> None:
        """A PolicyError naming the first family of the policy ``space`` does not have as it was."""
        prunable = {f.index for f in space.families if f.groups}
        for entry in self.families:
            family = space.families[entry.index] if entry.index < len(space.families) else None
            widths = [p.width for p in family.pieces] if family is not None else None
            if family is None or family.name != entry.name or widths != entry.width:
                found = "none" if family is None else f"{family.name} of widths {widths}"
                raise PolicyError(
                    f"the policy is for another model: its family #{entry.index} is {entry.name} of widths "
                    f"{entry.width}, this model's is {found}; search again on this model"
                )
            fixed = [p.width - len(p.groups) for p in family.pieces]
            if any(not f <= k <= w for f, k, w in zip(fixed, entry.kept, widths)):
                raise PolicyError(
                    f"family {entry.name} keeps {entry.kept} of {entry.width} groups per piece in the "
                    f"policy, outside what it can keep ({fixed} unprunable)"
                )
            prunable.discard(entry.index)
        if prunable:
            missing = space.families[min(prunable)].name
            raise PolicyError(f"the policy says nothing of family {missing}; search again on this model")

    @property
    def removes(self) -> int:
        """How many groups the policy removes in all."""
        return sum(w - k for entry in self.families for w, k in zip(entry.width, entry.kept))

    def removed(
        self,
        space: GroupSpace,
        scores: torch.Tensor,
        share: float = 1.0,
        taken: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The groups to remove, lowest-scored first in each piece, to reach these widths (``share`` of
        the way there, for a schedule that prunes in steps). Groups in ``taken`` are gone already and
        count; groups in ``keep`` never go."""
        self.check(space)
        removed = torch.zeros(space.num_groups, dtype=torch.bool)
        score = scores.tolist()
        gone = taken.tolist() if taken is not None else [False] * space.num_groups
        held = keep.tolist() if keep is not None else [False] * space.num_groups
        for entry in self.families:
            for piece, kept in zip(space.families[entry.index].pieces, entry.kept):
                want = round(share * (piece.width - kept)) - (piece.width - _kept(piece, gone))
                free = sorted(
                    (g for g in piece.groups if not gone[g] and not held[g]), key=lambda g: (score[g], g)
                )
                removed[free[: max(0, want)]] = True
        return removed

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PolicyError(f"not a zigprune policy (its format is not {FORMAT!r})")
        try:
            families = [FamilyWidth(**entry) for entry in data["families"]]
            about = {key: data.get(key, "") for key in ("budget", "strategy")}
            numbers = {key: dict(data.get(key, {})) for key in ("predicted", "measured")}
            return cls(families, **about, **numbers, precision=dict(data.get("precision", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise PolicyError(f"a malformed policy ({type(err).__name__}: {err})") from err


def _kept(piece: Piece, gone: list[bool]) -> int:
    """The groups ``piece`` keeps once those marked in ``gone`` are removed (its unprunable ones too)."""
    return piece.width - sum(gone[g] for g in piece.groups)
