"""A compress run's report: ``report.md`` with the before/after table and PNG plots (matplotlib, Agg).

Everything is rendered from the run's files (``metrics.json``, ``history.json``, ``plan.json``), so
``zigprune report RUN_DIR`` re-renders it. Without matplotlib the report says so and keeps its tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoadError
from ..io.atomic import atomic_write
from .deploy_tables import deploy_lines
from .rundir import PLOT_FILES, REPORT

MAX_WIDTH_ROWS = 40


def _fmt_int(n: float) -> str:
    return f"{int(n):,}"


def _ratio(before: float, after: float, word: str) -> str:
    return f"{before / after:.2f}x {word}" if after else "—"


def table(metrics: dict[str, Any]) -> str:
    """The before/after Markdown table: accuracy, params, MACs, latency, speedup next to the MACs ratio."""
    dense, slim = metrics["dense"], metrics["slim"]
    macs_ratio = metrics["reduction"]["macs"]
    rows = [("", "dense", "slim", "change")]
    if "perplexity" in slim:
        change = f"{slim['perplexity'] / dense['perplexity']:.2f}x"
        rows.append(("perplexity", f"{dense['perplexity']:.2f}", f"{slim['perplexity']:.2f}", change))
        rows.append(("next token as dense", "100.0%", f"{slim['next_token']:.1%}", ""))
    if "cosine" in slim:
        rows.append(("output cosine vs dense", "1.0000", f"{slim['cosine']:.4f}", ""))
        rows.append(("top-1 neighbour kept", "100.0%", f"{slim['retrieval']:.1%}", ""))
    elif dense.get("accuracy") is not None:
        change = f"{100 * (slim['accuracy'] - dense['accuracy']):+.1f} pt"
        rows.append(("test accuracy", f"{dense['accuracy']:.2%}", f"{slim['accuracy']:.2%}", change))
    else:
        rows.append(("test accuracy", "not trained", f"{slim['accuracy']:.2%}", ""))
    rows.append(
        (
            "params",
            _fmt_int(dense["params"]),
            _fmt_int(slim["params"]),
            _ratio(dense["params"], slim["params"], "fewer"),
        )
    )
    rows.append(
        (
            "MACs per sample",
            _fmt_int(dense["macs"]),
            _fmt_int(slim["macs"]),
            _ratio(dense["macs"], slim["macs"], "fewer"),
        )
    )
    for backend, timings in dense.get("latency", {}).items():
        slim_times = {t["batch"]: t for t in slim["latency"][backend]}
        for entry in timings:
            after = slim_times[entry["batch"]]
            speed = entry["median_ms"] / after["median_ms"]
            rows.append((
                f"latency {backend}, batch {entry['batch']}",
                f"{entry['median_ms']:.3f} ms",
                f"{after['median_ms']:.3f} ms",
                f"{speed:.2f}x faster ({speed / macs_ratio:.2f} of the MACs ratio)",
            ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(
        1,
        "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|",
    )
    return "\n".join(lines)


@dataclass
class RunData:
    """What the plots read: metrics, the pruning run's history, the dense baseline's (if trained), widths."""

    metrics: dict[str, Any]
    history: dict[str, Any]
    baseline: dict[str, Any] | None
    widths: list[dict[str, Any]]


def _steps(history: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    rows = [row for row in history["steps"] if key in row]
    return [row["step"] for row in rows], [row[key] for row in rows]


def pruning_span(history: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]] | None:
    """The logged rows just before the first and at the last change of group sparsity, or None.

    That is where pruning ran, whatever the optimizer's schedule; each row holds ``step`` and ``epoch``.
    """
    rows = [row for row in history["steps"] if "group_sparsity" in row]
    changed = [i for i in range(1, len(rows)) if rows[i]["group_sparsity"] != rows[i - 1]["group_sparsity"]]
    return (rows[changed[0] - 1], rows[changed[-1]]) if changed else None


def _mark_pruning(axes: Any, history: dict[str, Any], unit: str) -> None:
    """Shade where pruning ran on ``axes``, in ``unit`` (``step`` or ``epoch``)."""
    span = pruning_span(history)
    if span is not None:
        axes.axvspan(span[0][unit], span[1][unit], color="C3", alpha=0.12, label="pruning")


def _plot_training(figure: Any, run: RunData) -> bool:
    if not run.history["steps"]:
        return False
    curves = [(run.history, "train_accuracy", "train"), (run.history, "test_accuracy", "test (full model)")]
    if run.baseline is not None:
        curves.append((run.baseline, "test_accuracy", "test (dense baseline)"))
    scored = [(h, k, label) for h, k, label in curves if any(k in row for row in h["epochs"])]
    loss_ax, acc_ax = figure.subplots(1, 2) if scored else (figure.subplots(), None)
    loss_ax.plot(*_steps(run.history, "loss"), lw=0.8, label="pruning run")
    if run.baseline is not None:
        loss_ax.plot(*_steps(run.baseline, "loss"), lw=0.8, color="0.5", label="dense baseline")
    _mark_pruning(loss_ax, run.history, "step")
    loss_ax.set(title="training loss", xlabel="step", yscale="log")
    loss_ax.legend()
    if acc_ax is None:
        return True
    for history, key, label in scored:
        epochs = [row for row in history["epochs"] if key in row]
        acc_ax.plot([row["epoch"] for row in epochs], [row[key] for row in epochs], marker=".", label=label)
    _mark_pruning(acc_ax, run.history, "epoch")
    acc_ax.set(title="accuracy per epoch", xlabel="epoch")
    acc_ax.legend()
    return True


def _plot_sparsity(figure: Any, run: RunData) -> bool:
    if not _steps(run.history, "macs_left")[0]:
        return False
    ax = figure.subplots()
    ax.plot(*_steps(run.history, "group_sparsity"), label="groups at zero")
    ax.plot(*_steps(run.history, "macs_left"), label="MACs left")
    ax.set(title="group sparsity and MACs over training", xlabel="step", ylim=(0, 1.02))
    ax.legend()
    return True


def _plot_widths(figure: Any, run: RunData) -> bool:
    """The share of each family's width kept, so 12 heads and 1536 MLP channels read on one axis."""
    if not run.widths:
        return False
    rows = run.widths[:MAX_WIDTH_ROWS]
    ax = figure.subplots()
    y = range(len(rows))
    shares = [r["after"] / r["before"] if r["before"] else 1.0 for r in rows]
    ax.barh(y, [1.0] * len(rows), color="0.88")
    bars = ax.barh(y, shares, color="C0")
    ax.bar_label(bars, [f" {r['after']}/{r['before']}" for r in rows], fontsize=7)
    ax.set_yticks(list(y), [_short(r["family"]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    more = f" (first {MAX_WIDTH_ROWS} of {len(run.widths)})" if len(run.widths) > MAX_WIDTH_ROWS else ""
    ax.set(title=f"share of each layer family's width kept{more}", xlabel="kept / before", xlim=(0, 1.15))
    figure.set_figheight(max(3.0, 0.22 * len(rows) + 1.2))
    return True


def _short(name: str, limit: int = 44) -> str:
    """A family name cut at a dot from the left (``…layer.0.intermediate.dense``), never mid-word."""
    if len(name) <= limit:
        return name
    parts = name.split(".")
    while len(parts) > 1 and len(".".join(parts)) > limit - 1:
        parts = parts[1:]
    return "…" + ".".join(parts)[-(limit - 1) :]


def _plot_costs(figure: Any, run: RunData) -> bool:
    dense, slim = run.metrics["dense"], run.metrics["slim"]
    labels, values = (
        ["params", "MACs"],
        [slim["params"] / dense["params"], slim["macs"] / max(dense["macs"], 1)],
    )
    for backend, timings in dense.get("latency", {}).items():
        slim_times = {t["batch"]: t["median_ms"] for t in slim["latency"][backend]}
        for entry in timings:
            labels.append(f"{backend}\nbatch {entry['batch']}")
            values.append(slim_times[entry["batch"]] / entry["median_ms"])
    ax = figure.subplots()
    bars = ax.bar(range(len(values)), values, color="C0")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.bar_label(bars, [f"{v:.2f}" for v in values], fontsize=8)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set(title="slim model relative to dense (dense = 1)", ylim=(0, max(1.1, max(values) * 1.15)))
    return True


PLOTS: dict[str, tuple[str, Callable[[Any, RunData], bool]]] = dict(
    zip(
        PLOT_FILES,
        (
            ("Training", _plot_training),
            ("Group sparsity and MACs", _plot_sparsity),
            ("Kept width per layer", _plot_widths),
            ("Params, MACs and latency", _plot_costs),
        ),
        strict=True,
    )
)


def _draw(out: Path, run: RunData) -> list[tuple[str, str]] | str:
    """Write each plot that has data; the (title, file) pairs, or why there are no plots."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "Plots skipped: matplotlib is not installed (pip install 'zigprune[plots]')."
    drawn = []
    for name, (title, plot) in PLOTS.items():
        figure = Figure(figsize=(9, 3.4), layout="constrained")
        if plot(figure, run):
            atomic_write(out / name, lambda temp, figure=figure: figure.savefig(temp, format="png", dpi=110))
            drawn.append((title, name))
    return drawn


def _widths(out: Path) -> list[dict[str, Any]]:
    """Every prunable family's width before and after, from ``plan.json`` (cut or not)."""
    try:
        plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
        return list(plan["widths"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def widths_table(widths: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of every family's kept width: before, after and the share kept."""
    lines = ["| family | before | after | kept |", "|---|---:|---:|---:|"]
    for w in widths:
        kept = w["after"] / w["before"] if w["before"] else 1.0
        lines.append(f"| {w['family']} | {w['before']} | {w['after']} | {kept:.0%} |")
    return lines


def render(
    out: str | Path, metrics: dict[str, Any], history: dict[str, Any], baseline: dict[str, Any] | None = None
) -> Path:
    """Write ``report.md`` and its plots into ``out`` from a run's metrics and training histories.

    ``baseline`` is the dense baseline's training history, drawn beside the pruning run's.
    """
    out = Path(out)
    widths = _widths(out)
    plots = _draw(out, RunData(metrics, history, baseline, widths))
    config, seconds = metrics["config"], metrics["seconds"]
    lines = [
        f"# zigprune run: {config['model']} on {config['data']}",
        "",
        f"`{metrics.get('command') or 'zigprune compress'}`",
        "",
        *_setup(metrics),
        "",
        "Wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + ".",
        "",
    ]
    if isinstance(plots, str):
        lines += [plots, ""]
    for title, name in plots if not isinstance(plots, str) else []:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    if widths:
        lines += ["## Kept widths", "", *widths_table(widths), ""]
    lines += deploy_lines(metrics)
    text = "\n".join(lines)
    return atomic_write(out / REPORT, lambda temp: temp.write_text(text, encoding="utf-8"))


FIDELITY = (
    "Fidelity is the slim model's output next to the dense model's on held-out text (mean cosine of "
    "mean-pooled outputs; top-1: each passage's nearest other passage is unchanged)"
)
TIMING = "Latency is the median of interleaved single-threaded calls."
DOMAIN = (
    "\nCalibrate and evaluate on text of the domain the model will serve: pruned from technical text, "
    "all-MiniLM-L6-v2 kept a cosine of 0.93 on held-out technical lines and 0.74 on everyday sentences. "
    "`zigprune eval RUN --data text:FILE` measures this model on other text, `--eval-data` sets it for "
    "a run (see docs/post-training.md)."
)


def _setup(metrics: dict[str, Any]) -> list[str]:
    """How the run was made, under the table: training recipe (compress) or method and calibration (prune)."""
    config, groups = metrics["config"], metrics["groups"]
    removed = f"{groups['zero']} of {groups['total']} groups removed."
    text = "cosine" in metrics["slim"]
    if metrics.get("kind") == "prune":
        quality = FIDELITY if text else "Quality is test accuracy before and after pruning"
        used = metrics.get("calibration", {})
        samples, source = used.get("samples", config["calibration"]), used.get("data", config["data"])
        evaluated = f", evaluated on {used['evaluated']}" if "evaluated" in used else ""
        return [
            f"Post-training pruning with `{config['method']}`, target `{config['target']}`, "
            f"{samples} calibration samples of {source}{evaluated}, {_recovery(metrics)}. {removed}",
            "",
            table(metrics),
            "",
            f"{quality}. {TIMING}",
            *([DOMAIN] if text else []),
        ]
    recipe = (
        f"{config['optimizer'].upper()} ({config.get('variant', 'sgd')}), target `{config['target']}`, "
        f"{config['epochs']} epochs ({metrics['steps']} steps), lr {config['lr']}, batch "
        f"{config['batch_size']}, seed {config['seed']}. {removed}"
    )
    if config.get("distill"):
        loss = (
            "cosine of mean-pooled outputs" if text else "KL divergence of the logits plus the labels' loss"
        )
        recipe += f" Distilled from the starting model, frozen ({loss})."
    full = metrics["slim"].get("full_model_cosine" if text else "full_model_accuracy")
    check = f"cosine {full:.4f}" if text else f"{full:.2%}"
    return [recipe, "", table(metrics), "", f"{_dense_note(metrics, text)} (the slim model reproduces the "
            f"trained full model: {check}). {TIMING}"]  # fmt: skip


def _recovery(metrics: dict[str, Any]) -> str:
    """What a prune run did after pruning: nothing, or distilling the slim model (and where it started)."""
    config, slim = metrics["config"], metrics["slim"]
    epochs = config.get("distill_epochs") or 0
    if not epochs:
        return "no training"
    start = (
        f"cosine {slim['pruned_cosine']:.4f}" if "pruned_cosine" in slim else f"{slim['pruned_accuracy']:.2%}"
    )
    return (
        f"then {epochs} epoch{'s' * (epochs > 1)} distilling the slim model from the dense one "
        f"({config['variant']}, lr {config['lr']:g}, batch {config['batch_size']}; "
        f"{start} just after pruning)"
    )


def _dense_note(metrics: dict[str, Any], text: bool) -> str:
    """What the dense column is: the starting model (distillation), a trained baseline, or nothing."""
    if text:
        return FIDELITY + ", the dense model being the starting one"
    if metrics["dense"].get("accuracy") is None:
        return "No dense baseline was trained (--no-baseline)."
    if metrics["config"].get("distill"):
        return "Dense accuracy is the starting model's, the teacher"
    return "Dense accuracy is the same model trained with the same recipe and plain SGD"


def render_dir(out: str | Path) -> Path:
    """Re-render ``report.md`` of a finished run from its files; ``LoadError`` if missing or corrupt."""
    out = Path(out)
    found = {}
    for name in ("metrics.json", "history.json"):
        try:
            found[name] = json.loads((out / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LoadError(
                f"{out} has no {name}: not a finished zigprune run; run zigprune compress"
            ) from None
        except (OSError, ValueError) as err:
            raise LoadError(f"{out / name} is corrupt ({err}); run zigprune compress --force again") from None
    try:
        histories = found["history.json"]
        return render(out, found["metrics.json"], histories["train"], histories.get("baseline"))
    except (KeyError, TypeError) as err:
        raise LoadError(
            f"{out} has an incomplete metrics.json or history.json (missing {err}); run again"
        ) from None
