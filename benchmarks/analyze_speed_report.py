"""The tables and plot of ``benchmarks/analyze_speed.py`` (its cases are passed in as they ran)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def fmt_s(x: float | None) -> str:
    if x is None:
        return "error"
    return f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def fmt_count(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 10e6 else f"{n / 1e6:.2f}M"


def fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def main_table(cases: list[Any]) -> str:
    lines = [
        "| model | params | zigprune analyze s (check off) | analyze s (check on) | TP build_dependency s "
        "| ratio zigprune/TP | torch.export alone s (/TP) | **analyze / export alone** | construct s "
        "| num_groups |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        r = case.result
        if "error" in r:
            lines.append(
                f"| {case.label} | {fmt_count(r.get('params'))} | error | error | error | error "
                "| error | error | error | error |"
            )
            continue
        lines.append(
            f"| {case.label} | {fmt_count(r['params'])} | {fmt_s(r['analyze_check_off']['median_s'])} "
            f"| {fmt_s(r['analyze_check_on']['median_s'])} | {fmt_s(r['tp_build_dependency']['median_s'])} "
            f"| {r['ratio_zigprune_tp']:.2f} | {fmt_s(r['torch_export']['median_s'])} "
            f"({r['ratio_export_tp']:.2f}) | **{r['ratio_analyze_export']:.2f}** "
            f"| {fmt_s(r['construct']['median_s'])} | {r['num_groups']} |"
        )
    return "\n".join(lines)


def memory_table(cases: list[Any]) -> str:
    lines = [
        "| model | analyze (check off) | analyze (check on) | TP build_dependency | construct |",
        "|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        r = case.result
        if "error" in r:
            continue
        keys = ("analyze_check_off", "analyze_check_on", "tp_build_dependency", "construct")
        lines.append(
            f"| {case.label} | " + " | ".join(fmt_mib(r[k]["peak_rss_delta_mib"]) for k in keys) + " |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| layers | params | zigprune s | TP s | zigprune s per layer |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['layers']} | {fmt_count(row['params'])} | {fmt_s(row['zigprune_s'])} "
            f"| {fmt_s(row['tp_s'])} | {fmt_s(row['zigprune_s_per_layer'])} |"
        )
    return "\n".join(lines)


def fit_line(name: str, fit: dict[str, float] | None) -> str:
    if fit is None:
        return f"- {name}: not enough points for a fit"
    return (
        f"- {name}: {fit['intercept_s']:.3f} s + {fit['slope_s_per_layer']:.3f} s x layers "
        f"(R² = {fit['r2']:.4f})"
    )


def plot(
    rows: list[dict[str, Any]], fits: dict[str, dict[str, float] | None], hidden: int, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ok = [r for r in rows if r["zigprune_s"] is not None]
    xs = [r["layers"] for r in ok]
    for key, label, color in (
        ("zigprune", "zigprune analyze (check=False)", "tab:blue"),
        ("tp", "Torch-Pruning build_dependency", "tab:orange"),
    ):
        ax.plot(xs, [r[f"{key}_s"] for r in ok], "o-", color=color, label=label)
        fit = fits.get(key)
        if fit is not None and xs:
            line = [0, max(xs)]
            ax.plot(
                line,
                [fit["intercept_s"] + fit["slope_s_per_layer"] * x for x in line],
                "--",
                color=color,
                alpha=0.5,
                linewidth=1,
            )
    ax.set_xlabel("BERT encoder layers")
    ax.set_ylabel("time (s, median)")
    ax.set_title(f"Analysis time vs depth (BERT, hidden {hidden})")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def headline_ratios(mains: list[Any]) -> dict[str, float]:
    """analyze / export alone of BERT-base and ResNet-50 (the goal's models), where they ran."""
    wanted = ("BERT-base", "ResNet-50")
    return {
        c.label: c.result["ratio_analyze_export"]
        for c in mains
        if c.label.startswith(wanted) and "ratio_analyze_export" in c.result
    }
