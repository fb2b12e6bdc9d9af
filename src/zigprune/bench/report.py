"""The bench's outputs: per-method summary (mean ± sd over seeds), Markdown table, accuracy-vs-MACs plot.

``goal`` states the published goal so that it can fail: zigprune's best optimizer within 0.3 pt of
the dense model and at least as accurate as every other method, mean over seeds, at equal MACs
(methods that missed the MACs target are not compared).
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write
from .harness import ZIGPRUNE_OPTIMIZERS, RunRecord

GOAL_GAP = 0.3
MACS_TOLERANCE = 0.05


@dataclass
class Row:
    """One method's summary over its successful seeds."""

    method: str
    seeds: int
    accuracy: float
    accuracy_sd: float
    macs: float
    params: float
    reduction: float
    theoretical: bool
    speedup: dict[str, float]
    wall_s: float
    epochs: float
    failed: int
    int8_accuracy: float | None = None
    int8_speedup: dict[str, float] | None = None


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[RunRecord], methods: list[str]) -> list[Row]:
    """One ``Row`` per method in ``methods`` order (methods whose every seed failed get no row)."""
    rows = []
    for method in methods:
        ok = [r for r in records if r.method == method and r.error is None]
        failed = sum(1 for r in records if r.method == method and r.error is not None)
        if not ok:
            continue
        batches = sorted({b for r in ok for b in (r.speedup or {})}, key=int)
        rows.append(
            Row(
                method=method,
                seeds=len(ok),
                accuracy=100 * statistics.fmean(r.accuracy for r in ok),
                accuracy_sd=100 * _sd([r.accuracy for r in ok]),
                macs=statistics.fmean(r.macs for r in ok),
                params=statistics.fmean(r.params for r in ok),
                reduction=statistics.fmean(r.dense_macs / max(r.macs, 1) for r in ok),
                theoretical=any(r.theoretical for r in ok),
                speedup={
                    b: statistics.fmean(r.speedup[b] for r in ok if r.speedup and b in r.speedup)
                    for b in batches
                },
                wall_s=statistics.fmean(r.wall_s for r in ok),
                epochs=statistics.fmean(r.epochs for r in ok),
                failed=failed,
                **_int8_means(ok),
            )
        )
    return rows


def _int8_means(ok: list[RunRecord]) -> dict[str, Any]:
    """Mean int8 accuracy (%) and speedups over the seeds that measured them (``bench --int8``)."""
    done = [r for r in ok if r.int8_accuracy is not None and r.int8_speedup]
    if not done:
        return {}
    batches = sorted({b for r in done for b in r.int8_speedup}, key=int)
    return {
        "int8_accuracy": 100 * statistics.fmean(r.int8_accuracy for r in done),
        "int8_speedup": {
            b: statistics.fmean(r.int8_speedup[b] for r in done if b in r.int8_speedup) for b in batches
        },
    }


def goal(rows: list[Row], target: float) -> str:
    """Whether zigprune's best optimizer met the goal (see module docstring), in one sentence."""
    by_method = {r.method: r for r in rows}
    ours = [r for r in rows if r.method in ZIGPRUNE_OPTIMIZERS and _at_target(r, target)]
    if not ours or "dense" not in by_method:
        return "Goal not evaluated: it needs the dense run and a zigprune optimizer at the MACs target."
    best = max(ours, key=lambda r: r.accuracy)
    gap = by_method["dense"].accuracy - best.accuracy
    others = [
        r
        for r in rows
        if r.method not in ZIGPRUNE_OPTIMIZERS and r.method != "dense" and _at_target(r, target)
    ]
    ahead = [r.method for r in others if r.accuracy > best.accuracy]
    met = gap <= GOAL_GAP and not ahead
    verdict = "met" if met else "NOT met"
    detail = f"{best.method} is {gap:+.2f} pt below dense (goal ≤ {GOAL_GAP})"
    if ahead:
        detail += f"; more accurate: {', '.join(ahead)}"
    return f"Goal {verdict}: {detail}."


def _at_target(row: Row, target: float) -> bool:
    return row.reduction >= target * (1 - MACS_TOLERANCE)


def table(rows: list[Row], target: float) -> str:
    """Markdown table: method, accuracy mean ± sd, MACs, reduction, params, latency speedup, (with
    ``bench --int8``) int8 accuracy and its ONNX Runtime speedup over dense fp32, wall time."""
    batches = sorted({b for r in rows for b in r.speedup}, key=int)
    head = ["method", "accuracy (%)", "MACs", "MACs reduction", "params"]
    head += [f"speedup b{b}" for b in batches]
    int8 = sorted({b for r in rows for b in (r.int8_speedup or {})}, key=int)
    head += ["int8 accuracy (%)", *(f"int8 speedup b{b}" for b in int8)] if int8 else []
    head += ["wall time (s)", "epochs", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for r in rows:
        mark = "*" if r.theoretical else ""
        off = "" if r.method == "dense" or _at_target(r, target) else " ⚠"
        cells = [
            r.method,
            f"{r.accuracy:.2f} ± {r.accuracy_sd:.2f}",
            f"{r.macs / 1e6:.2f} M{mark}",
            f"{r.reduction:.2f}×{mark}{off}",
            f"{r.params / 1e3:.1f} k{mark}",
        ]
        cells += [f"{r.speedup[b]:.2f}×" if b in r.speedup else "—" for b in batches]
        if int8:
            cells.append(f"{r.int8_accuracy:.2f}" if r.int8_accuracy is not None else "—")
            cells += [
                f"{r.int8_speedup[b]:.2f}×" if r.int8_speedup and b in r.int8_speedup else "—" for b in int8
            ]
        cells += [
            f"{r.wall_s:.1f}",
            f"{r.epochs:g}",
            f"{r.seeds}" + (f" ({r.failed} failed)" if r.failed else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[Row], title: str) -> bytes | None:
    """Accuracy against MACs, and every method ranked by accuracy, as PNG bytes; None without matplotlib.

    Hollow markers: theoretical MACs (unstructured masks). Most methods share one MACs target, so the
    right panel spreads them out: mean ± sd per method, best at the top, the dense mean dashed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax, rank) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    tab20 = plt.get_cmap("tab20").colors
    palette = tab20[::2] + tab20[1::2]  # the ten dark colours, then their light twins
    colour = {r.method: palette[i % len(palette)] for i, r in enumerate(rows)}
    for r in rows:
        style = {"mfc": "none"} if r.theoretical else {}
        marker = "*" if r.method in ZIGPRUNE_OPTIMIZERS else ("s" if r.method == "dense" else "o")
        ax.errorbar(
            r.macs / 1e6, r.accuracy, yerr=r.accuracy_sd, fmt=marker, ms=9, capsize=3, label=r.method,
            color=colour[r.method], **style,
        )  # fmt: skip
    ax.set(xlabel="MACs (M) per sample", ylabel="last-epoch test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ranked = sorted(rows, key=lambda r: r.accuracy)
    for y, r in enumerate(ranked):
        rank.errorbar(r.accuracy, y, xerr=r.accuracy_sd, fmt="o", capsize=3, color=colour[r.method])
    dense = next((r for r in rows if r.method == "dense"), None)
    if dense is not None:
        rank.axvline(dense.accuracy, color="grey", linestyle="--", linewidth=1)
    rank.set_yticks(range(len(ranked)), [r.method for r in ranked], fontsize=8)
    rank.set(xlabel="last-epoch test accuracy (%), mean ± sd over seeds", title="ranked")
    rank.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write(out: Path, stem: str, markdown: str, results: str, png: bytes | None) -> list[Path]:
    """Write ``stem``.md, .json and (with a plot) .png into ``out`` atomically; returns their paths."""
    paths = [out / f"{stem}.md", out / f"{stem}.json"]
    atomic_write(paths[0], lambda temp: temp.write_text(markdown, encoding="utf-8"))
    atomic_write(paths[1], lambda temp: temp.write_text(results, encoding="utf-8"))
    if png is not None:
        paths.append(out / f"{stem}.png")
        atomic_write(paths[2], lambda temp: temp.write_bytes(png))
    return paths
