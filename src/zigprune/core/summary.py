"""Readable tables of a GroupSpace: what can be pruned, what it costs, and why the rest cannot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .trace import batch_size

if TYPE_CHECKING:
    from .space import GroupSpace

MACS_NOTE = (
    "MACs %: each op's MACs split evenly between the channel dims they scale with (a conv's input and "
    "output channels), so the column adds up to at most 100%."
)


def family_macs(space: GroupSpace) -> torch.Tensor:
    """Each family's share of the model's MACs (float64, sums to at most 1).

    An op's MACs are split evenly between its factors (the channel vectors its cost scales with),
    and each factor's part evenly between its channels' families. ``space.group_macs`` is not used:
    it credits an op's full MACs to every factor (the saving of one removal), so it counts a conv
    in both its input and its output family.
    """
    share = torch.zeros(len(space.families), dtype=torch.float64)
    total = max(space.total_macs, 1)
    for record in space.costs:
        factors = [f for f in record.factors if f.numel()]
        for f in factors:
            known = f[f >= 0]
            part = record.macs / total / len(factors) / f.numel()
            share.index_add_(
                0, space.class_family[known], torch.full((known.numel(),), part, dtype=torch.float64)
            )
    return share


def summary(space: GroupSpace, max_rows: int = 40) -> str:
    """One row per family: width, prunable groups, share of MACs, reason for unprunable channels."""
    shares = family_macs(space).tolist()
    batch = batch_size(space.inputs)
    lines = [
        f"{type(space.model).__name__}: {space.num_groups} prunable groups in "
        f"{sum(f.prunable for f in space.families)} of {len(space.families)} families; "
        f"{space.total_macs:,} MACs per sample in matmul/conv/attention"
        + (f" (traced on a batch of {batch})" if batch > 1 else ""),
    ]
    lines += _check_lines(space)
    lines.append(f"{'family':<48} {'width':>6} {'prunable':>8} {'MACs %':>7}  why not")
    rows = sorted(space.families, key=lambda f: (not f.prunable, -shares[f.index], f.index))
    for family in rows[:max_rows]:
        why = "; ".join(f"{reason} ({n})" for reason, n in family.reasons.items())
        lines.append(
            f"{family.name[-48:]:<48} {family.width:>6} {len(family.groups):>8} "
            f"{100 * shares[family.index]:>6.1f}%  {why}"
        )
    if len(rows) > max_rows:
        lines.append(f"… {len(rows) - max_rows} more families")
    lines.append(MACS_NOTE)
    return "\n".join(lines)


def _check_lines(space: GroupSpace) -> list[str]:
    """What analyze's construction check changed, so that no family is made unprunable quietly."""
    report = space.check
    if report is None or not report.changed:
        return []
    lines = ["construction check (slim models built with groups zeroed; see space.check):"]
    lines += [f"  tied to keep equal widths: {' + '.join(names)}" for names in report.tied]
    lines += [f"  {n} group(s) made unprunable in {name}" for name, n in report.cut.items()]
    if report.dropped:
        lines.append(f"  made wholly unprunable: {', '.join(report.dropped)}")
    return lines
