"""``zigprune search``'s picture: each strategy's quality against the cost it left (the budgets as
lines, the dense model as a point; over several budgets, each strategy's quality-vs-budget front),
and its measured loss against the error the database predicted (how additive the database was).
matplotlib (Agg); without it, a line saying so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write
from ..search import parse_budget

PLOT = "search.png"


def plot_search(out: Path, results: dict[str, Any]) -> str | None:
    """Write ``out/search.png``; None when written, else why not."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "Plot skipped: matplotlib is not installed (pip install 'zigprune[plots]')."
    rows = [r for r in results["rows"] if "unreachable" not in r]
    key = next((k for k, v in results["dense"].items() if isinstance(v, float)), None)
    if not rows or key is None:
        return "Plot skipped: no strategy met the budget."
    budgets = [parse_budget(text) for text in results.get("budgets", [results["budget"]])]
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    front, additive = figure.subplots(1, 2)
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = sorted((_cost(r), r[key]) for r in rows if r["strategy"] == strategy)
        front.plot(*zip(*mine), marker="o", label=strategy)
        additive.scatter(*zip(*((r["error"], r["loss"]) for r in rows if r["strategy"] == strategy)))
    front.scatter(1.0, results["dense"][key], marker="*", color="black", label="dense")
    for budget in budgets:
        front.axvline(budget.keep, linestyle="--", color="grey", linewidth=0.8)
    whats = sorted({b.what for b in budgets})
    title = "quality at the budget" if len(budgets) == 1 else "quality against the budget"
    front.set(
        xlabel=f"share of the dense {' / '.join(whats)} left (dashed: budgets)", ylabel=key, title=title
    )
    front.legend(fontsize=7)
    additive.set(xlabel="predicted (summed) error", ylabel="measured loss", title="how additive")
    atomic_write(out / PLOT, lambda temp: figure.savefig(temp, format="png", dpi=110))
    return None


def _cost(row: dict[str, Any]) -> float:
    """The share of the dense cost a strategy left: measured for a latency budget, else counted."""
    return row["measured"]["share"] if row.get("measured") else row["share"]
