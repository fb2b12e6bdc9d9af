"""The tables, plot and files of ``benchmarks/train_once.py``: per-method summaries over seeds,
per-epoch and timing tables, the accuracy plot."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEM = "train_once"
LABELS = {"dense": "dense SGD", "hspg": "HSPG", "dhspg": "DHSPG", "hesso": "HESSO"}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict], methods: list[str], overhead: dict | None) -> list[dict]:
    dense = {r["seed"]: r for r in runs if r["method"] == "dense" and "error" not in r}
    rows = []
    for method in methods:
        ok = [r for r in runs if r["method"] == method and "error" not in r]
        failed = [r for r in runs if r["method"] == method and "error" in r]
        row: dict[str, Any] = {"method": method, "label": LABELS[method], "seeds": [r["seed"] for r in ok]}
        if failed:
            row["failed_seeds"] = [r["seed"] for r in failed]
        if ok:
            acc, acc_sd = mean_sd([r["accuracy"] for r in ok])
            wall, wall_sd = mean_sd([r["wall_s"] for r in ok])
            ratios = [r["wall_s"] / dense[r["seed"]]["wall_s"] for r in ok if r["seed"] in dense]
            cpu_ratios = [r["cpu_s"] / dense[r["seed"]]["cpu_s"] for r in ok if r["seed"] in dense]
            row.update(
                accuracy=acc,
                accuracy_sd=acc_sd,
                macs=statistics.fmean(r["macs"] for r in ok),
                macs_reduction=statistics.fmean(r["macs_reduction"] for r in ok),
                params=statistics.fmean(r["params"] for r in ok),
                wall_s=wall,
                wall_s_sd=wall_sd,
                wall_ratio=statistics.fmean(ratios) if ratios else None,
                cpu_s=statistics.fmean(r["cpu_s"] for r in ok),
                cpu_ratio=statistics.fmean(cpu_ratios) if cpu_ratios else None,
                macs_left_report=(
                    statistics.fmean(r["report"]["macs_left"] for r in ok) if ok[0]["report"] else None
                ),
                group_sparsity=(
                    statistics.fmean(r["report"]["group_sparsity"] for r in ok) if ok[0]["report"] else None
                ),
            )
        if overhead and method in overhead["methods"]:
            row["step_ratio"] = overhead["methods"][method]["step_ratio"]
            row["train_step_ratio"] = overhead["methods"][method]["total_ratio"]
        rows.append(row)
    return rows


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(rows: list[dict], seeds: int) -> str:
    acc_head = "last-epoch acc" + (" (mean ± sd)" if seeds > 1 else "")
    lines = [
        f"| method | {acc_head} | MACs | MACs reduction | params | wall time (s) | wall ratio vs dense "
        "| CPU-time ratio vs dense | step-time ratio vs SGD (fwd+bwd+step) | optimizer.step() ratio vs SGD |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "accuracy" not in r:
            acc = macs = red = params = wall = ratio = cpu = "failed"
        else:
            acc = f"{100 * r['accuracy']:.2f} %" + (f" ± {100 * r['accuracy_sd']:.2f}" if seeds > 1 else "")
            macs = f"{r['macs'] / 1e6:.2f} M"
            red = f"{r['macs_reduction']:.2f}×"
            params = f"{r['params'] / 1e3:.1f} k"
            wall = f"{r['wall_s']:.1f}"
            ratio = _fmt(r.get("wall_ratio"), ".2f", "×")
            cpu = _fmt(r.get("cpu_ratio"), ".2f", "×")
        lines.append(
            f"| {r['label']} | {acc} | {macs} | {red} | {params} | {wall} | {ratio} | {cpu} "
            f"| {_fmt(r.get('train_step_ratio'), '.3f', '×')} | {_fmt(r.get('step_ratio'), '.2f', '×')} |"
        )
    return "\n".join(lines)


def overhead_table(overhead: dict) -> str:
    lines = [
        "| optimizer | step() mean (ms) | step() median (ms) | fwd+bwd mean (ms) | fwd+bwd+step mean (ms) "
        "| step() ratio | fwd+bwd+step ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in overhead["methods"].values():
        lines.append(
            f"| {m['optimizer']} | {m['step_ms_mean']:.2f} | {m['step_ms_median']:.2f} "
            f"| {m['fwd_bwd_ms_mean']:.1f} | {m['total_ms_mean']:.1f} "
            f"| {m['step_ratio']:.2f}× | {m['total_ratio']:.3f}× |"
        )
    return "\n".join(lines)


def timing_table(runs: list[dict]) -> str:
    lines = [
        "| method | seed | analyze (s) | training loop (s) | construct (s) | wall (s) | CPU (s) "
        "| fwd+bwd mean / median (ms) | step() mean / median (ms) | evaluation, excluded (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if "error" in r:
            continue
        lines.append(
            f"| {LABELS[r['method']]} | {r['seed']} | {r['analyze_s']:.2f} | {r['train_s']:.1f} "
            f"| {r['construct_s']:.2f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {r['in_run_fwd_bwd_ms_mean']:.0f} / {r['in_run_fwd_bwd_ms_median']:.0f} "
            f"| {r['in_run_step_ms_mean']:.2f} / {r['in_run_step_ms_median']:.2f} | {r['eval_s']:.1f} |"
        )
    return "\n".join(lines)


def epoch_table(runs: list[dict], methods: list[str], epochs: int) -> str:
    head = "| method | " + " | ".join(f"epoch {e}" for e in range(1, epochs + 1)) + " |"
    lines = [head, "|---|" + "---:|" * epochs]
    for method in methods:
        ok = [r for r in runs if r["method"] == method and "error" not in r]
        if not ok:
            continue
        cells = []
        for e in range(epochs):
            acc = statistics.fmean(r["epochs"][e]["test_acc"] for r in ok)
            cell = f"{100 * acc:.2f}"
            if ok[0]["epochs"][e].get("macs_left") is not None:
                left = statistics.fmean(r["epochs"][e]["macs_left"] for r in ok)
                cell += f" ({100 * left:.0f} % MACs)"
            cells.append(cell)
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, runs: list[dict], methods: list[str], epochs: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return False
    fig, (ax_acc, ax_macs) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in methods:
        ok = [r for r in runs if r["method"] == method and "error" not in r]
        if not ok:
            continue
        xs = list(range(1, epochs + 1))
        accs = [100 * statistics.fmean(r["epochs"][e]["test_acc"] for r in ok) for e in range(epochs)]
        ax_acc.plot(xs, accs, marker="o", label=LABELS[method])
        for i, r in enumerate(ok):
            if r["macs_left_history"]:
                steps, left = zip(*r["macs_left_history"])
                epochs_x = [s / r["steps_per_epoch"] for s in steps]
                ax_macs.plot(
                    epochs_x,
                    [100 * v for v in left],
                    color=ax_acc.lines[-1].get_color(),
                    alpha=1.0 if i == 0 else 0.4,
                    label=LABELS[method] if i == 0 else None,
                )
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy per epoch (full model)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_macs.set(
        xlabel="epoch", ylabel="MACs left (% of dense)", title="MACs left over training", ylim=(0, 105)
    )
    ax_macs.grid(alpha=0.3)
    if ax_macs.lines:
        ax_macs.legend()
    fig.suptitle(f"ResNet-20 on Fashion-MNIST, {epochs} epoch(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings, rows = report["settings"], report["summary"]
    machine = report["machine"]
    table = markdown_table(rows, len(settings["seeds"]))
    methods = settings["methods"]
    parts = [
        "# Train once: ResNet-20 on Fashion-MNIST, dense SGD vs HSPG / DHSPG / HESSO",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Date: {report['timestamp']}. Machine: {machine['platform']}, {machine['processor']}, "
        f"{machine['cpu_count']} CPUs ({machine['torch_num_threads']} torch threads), "
        f"torch {machine['torch']}, "
        f"zigprune {machine['zigprune']}. Seed(s): {', '.join(map(str, settings['seeds']))}.",
        "",
        f"Recipe: {settings['epochs']} epoch(s) on {settings['train_size']} training images "
        f"({settings['steps_per_epoch']} steps/epoch), tested on {settings['test_size']} images; "
        f"SGD momentum {settings['momentum']}, weight decay {settings['weight_decay']}, "
        f"batch {settings['batch_size']}, lr {settings['lr']} with a per-step cosine schedule to 0, "
        "random horizontal flips. HSPG λ = "
        f"{settings['hspg_lambda']} (no explicit target); DHSPG and HESSO target = {settings['macs_target']} "
        f'of the MACs (by="macs").',
        "",
        table,
        "",
        "Accuracy: last-epoch test accuracy of the constructed slim model (dense: the trained model). "
        "MACs and params: `zp.count` on a 1x1x28x28 input; MACs reduction = dense MACs / slim MACs. Wall "
        "time: `zp.analyze` + training loop + `space.construct()` (per-epoch evaluation excluded); its ratio "
        "is against the dense run of the same seed. CPU time: process CPU time (all threads) of the same "
        "parts, less sensitive than wall time to other processes sharing the machine. "
        "Step-time ratios: mean over "
        f"{settings['step_iters']} interleaved iterations on one batch of {settings['batch_size']}, vs "
        "`torch.optim.SGD` (zigprune optimizers with total_steps equal to the timed steps, so all "
        "phases of their schedule are included).",
        "",
    ]
    parts += [
        "## Timings inside the training runs",
        "",
        "Per-step times are measured around the forward+backward and `optimizer.step()` of every "
        "training step. Forward+backward is the same computation in every run (the model keeps its dense "
        "shape until `construct()`), so its differences between runs reflect load on the machine.",
        "",
        timing_table(report["runs"]),
        "",
    ]
    if report.get("step_overhead"):
        parts += ["## Optimizer-step overhead", "", overhead_table(report["step_overhead"]), ""]
    parts += [
        "## Test accuracy (%) per epoch (full model; MACs left at the end of the epoch)",
        "",
        epoch_table(report["runs"], methods, settings["epochs"]),
        "",
    ]
    errors = [r for r in report["runs"] if "error" in r]
    if errors:
        parts += ["## Errors", ""]
        for r in errors:
            parts += [f"{r['method']} seed {r['seed']}:", "", "```", r["error"].rstrip(), "```", ""]
    (out / f"{STEM}.md").write_text("\n".join(parts))
    report["plot"] = plot(out / f"{STEM}.png", report["runs"], methods, settings["epochs"])
    (out / f"{STEM}.json").write_text(json.dumps(report, indent=1))
