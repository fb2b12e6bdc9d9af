"""Readable tables of a GroupSpace: what can be pruned, what it costs, and why the rest cannot."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .space import GroupSpace


def summary(space: GroupSpace, max_rows: int = 40) -> str:
    """One row per family: width, prunable groups, share of MACs, reason for unprunable channels."""
    family_macs = [0.0] * len(space.families)
    for group, family in enumerate(space.group_family.tolist()):
        family_macs[family] += float(space.group_macs[group])
    total = max(space.total_macs, 1)
    lines = [
        f"{type(space.model).__name__}: {space.num_groups} prunable groups in "
        f"{sum(f.prunable for f in space.families)} of {len(space.families)} families; "
        f"{space.total_macs:,} MACs in matmul/conv/attention",
        f"{'family':<48} {'width':>6} {'prunable':>8} {'MACs %':>7}  why not",
    ]
    rows = sorted(space.families, key=lambda f: (not f.prunable, -family_macs[f.index], f.index))
    for family in rows[:max_rows]:
        why = "; ".join(f"{reason} ({n})" for reason, n in family.reasons.items())
        share = 100.0 * family_macs[family.index] / total
        lines.append(
            f"{family.name[-48:]:<48} {family.width:>6} {len(family.groups):>8} {share:>6.1f}%  {why}"
        )
    if len(rows) > max_rows:
        lines.append(f"… {len(rows) - max_rows} more families")
    return "\n".join(lines)
