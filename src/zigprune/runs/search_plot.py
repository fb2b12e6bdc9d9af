"""``zigprune search``'s picture: each strategy's quality against the cost it left (the budget as a
line, the dense model as a point), and its measured loss against the error the database predicted
(how additive the database was on this model). matplotlib (Agg); without it, a line saying so."""

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
    budget = parse_budget(results["budget"])
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    front, additive = figure.subplots(1, 2)
    for r in rows:
        cost = r["measured"]["share"] if r.get("measured") else r["share"]
        front.scatter(cost, r[key], label=r["strategy"])
        additive.scatter(r["error"], r["loss"], label=r["strategy"])
    front.scatter(1.0, results["dense"][key], marker="*", color="black", label="dense")
    front.axvline(budget.keep, linestyle="--", color="grey", label=f"budget {budget.keep:.0%}")
    front.set(xlabel=f"share of the dense {budget.what} left", ylabel=key, title="quality at the budget")
    front.legend(fontsize=7)
    additive.set(xlabel="predicted (summed) error", ylabel="measured loss", title="how additive")
    atomic_write(out / PLOT, lambda temp: figure.savefig(temp, format="png", dpi=110))
    return None
