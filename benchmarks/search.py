"""Policy search side by side: every strategy of ``zp.search`` at the same budget, applied by
``zp.prune(..., policy=...)`` with OBS, post-training, on the post-training benchmark's models.

ResNet-20 on Fashion-MNIST (trained 4 epochs on 20,000 images by ``post_training.trained_dense``,
cached; the test set is the same share of Fashion-MNIST's), 512 calibration images drawn at random
(seed 0), budgets ``macs=0.5``, ``macs=0.667`` (2x and 1.5x fewer MACs) and
``latency=0.5@onnxruntime`` (half the dense model's time in ONNX Runtime fp32, batch 64, one
thread), widths multiples of 8 and ``global`` ranking by score / cost^0.5, the settings of the
post-training benchmark. The groups are scored once per model and every strategy searches from
those scores (and, for the latency budget, from one layer table); ``evolution`` measures 24
candidates, each refit on 128 calibration images and measured on 128 others, ``bo`` as many
TPE trials, and ``amc``, ``galen`` and ``gnn-rl`` (the learned agents, issue 30) 12 random episodes and 48
of their DDPG agent, each candidate measured the same way. Per row: test accuracy (the int8
file's on an int8 budget, ``--budgets latency=0.8@onnxruntime-int8``), the MACs left (exact, from the
space), for the latency budget the measured and predicted share of the dense time, the search's
predicted (summed) error, the loss measured as ``evolution`` measures a candidate (how additive the
database is), the candidates the strategy measured, and the search's wall time (the scoring pass
included; the refit of ``zp.prune`` is not). ``--quick``: the digits CNN, ``macs=0.5`` and
``latency=0.5@torch`` timed briefly (``dp``, ``global`` and ``uniform`` only), a smoke run written under
``runs/`` so it never overwrites the published results. all-MiniLM-L6-v2 (where installed) at
``macs=0.667`` and ``macs=0.5``: cosine to the dense sentence embeddings and top-1 neighbour kept
on held-out python-docs lines, 256 calibration lines, ``evolution`` and ``bo`` measuring 12
candidates on 64 lines each and the learned agents 6 random and 24 episodes (a tiny random BERT
with ``--quick``, with ``dp``, ``global`` and ``uniform`` only). ``gnn-rl``'s transfer to other
models is ``search_transfer.py``. Run from the repository root::

    PYTHONPATH=src python benchmarks/search.py            # writes benchmarks/results/search
    PYTHONPATH=src python benchmarks/search.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zigprune as zp
from zigprune import data
from zigprune.data.text import batches, load_text
from zigprune.deploy import OnnxModule
from zigprune.deploy.quantize import int8_file
from zigprune.errors import TargetError, first_line
from zigprune.measure.fidelity import embeddings, fidelity
from zigprune.measure.timing_cache import TimingCache
from zigprune.posttrain.prune import group_scores
from zigprune.search import parse_budget
from zigprune.search.evolution import Evaluator
from zigprune.search.latency import LatencyMeter
from zigprune.training import evaluate, sample_inputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, goal_line, machine_info
from post_training import _minilm, _optional, _quick_text, _tiny_bert, trained_dense

DEFAULT_OUT = REPO / "benchmarks" / "results" / "search"
QUICK_OUT = REPO / "runs" / "bench-quick" / "search"
STRATEGIES = ("dp", "global", "uniform", "evolution", "bo", "amc", "galen", "gnn-rl")
SEARCHED, LEARNED = ("dp", "evolution", "bo"), ("amc", "galen", "gnn-rl")
#: The strategies of the smoke run's slower rows, its latency budget and its text encoder (every one
#: runs on its MACs budget).
QUICK_FEW = ("dp", "global", "uniform")
SHAPING = {"round_to": 8, "cost_power": 0.5}
BUDGETS = ("macs=0.5", "macs=0.667", "latency=0.5@onnxruntime")


def strategy_rows(
    dense: Any,
    example: Any,
    calibration: list[Any],
    budget: str,
    args: argparse.Namespace,
    measure: Any,
    strategies: tuple[str, ...] = STRATEGIES,
    agent: Path | None = None,
) -> list[dict[str, Any]]:
    """Each of ``strategies`` at ``budget`` on one scoring pass (and one layer table), each policy
    applied to a copy of ``dense`` by OBS and measured by ``measure(space, policy)`` (a dict of
    figures); ``agent``: gnn-rl's agent file (written, or applied when it exists)."""
    space = zp.analyze(copy.deepcopy(dense), example)
    start = time.perf_counter()
    scores = group_scores(space, calibration, progress=False)
    meter, kind = None, parse_budget(budget)
    if kind.kind == "latency":
        timing = {"batch": 64, "round_to": SHAPING["round_to"], "seconds": args.latency_seconds}
        meter = LatencyMeter.build(space, kind.runtime, **timing, cache=TimingCache())
    shared = time.perf_counter() - start
    evaluate = Evaluator.of(space, calibration, args.evaluation_samples, progress=False)
    options = SHAPING | {"scores": scores, "meter": meter, "progress": False}
    options |= {"evaluations": args.evaluations, "evaluation_samples": args.evaluation_samples}
    options["agent"] = agent
    found = []
    for strategy in strategies:
        begin, counted = time.perf_counter(), len(MEASURED)
        try:
            policy = zp.search(space, calibration, budget, strategy=strategy, **options)
        except TargetError as err:  # a latency budget the calibrated table says is out of reach
            found.append({"budget": budget, "strategy": strategy, "unreachable": first_line(err)})
            print(f"{budget} {strategy}: {err}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - begin + shared
        evaluations = len(MEASURED) - counted
        loss = evaluate(policy.removed(space, scores))
        copied = zp.analyze(copy.deepcopy(dense), example)
        zp.prune(copied, calibration, policy=policy, progress=False)
        left = copied.macs(copied.zero_groups()) / copied.total_macs
        row = {"budget": budget, "strategy": strategy, "seconds": seconds, "macs_share": left}
        row["evaluations"] = evaluations
        row |= {"error": policy.predicted["error"], "loss": loss, "latency": policy.measured}
        row |= measure(copied, policy)
        found.append(row)
        print(f"{budget} {strategy}: {row} ", file=sys.stderr)
    return found


def rows(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dense model's figures, and one row per budget and strategy."""
    name, dataset_name = ("digits_cnn", "digits") if args.quick else ("resnet20", "fashion-mnist")
    dataset = data.load(dataset_name, subset=args.subset)
    dense = trained_dense(name, dataset, args.epochs, args.subset, not args.no_progress)
    calibration = sample_inputs(dataset.train, args.calibration, seed=0, batch_size=64)
    example = calibration[0][:2]
    base = {"model": name, "data": dataset.name, "test": len(dataset.test)}
    base |= {"accuracy": evaluate(dense, dataset.test).accuracy, "macs": zp.count(dense, example)["macs"]}

    def measure(space: Any, policy: zp.Policy) -> dict[str, float]:
        figures = {"accuracy": evaluate(space.model, dataset.test).accuracy}
        if policy.precision:  # an int8 budget: the int8 file's accuracy, its fp32 layers kept
            with tempfile.TemporaryDirectory(prefix="zigprune-search-") as folder:
                slim, path = space.construct(), Path(folder) / "slim"
                int8 = int8_file(slim, example, calibration[:4], path, policy.fp32_layers)
                figures["int8_accuracy"] = evaluate(OnnxModule(int8), dataset.test).accuracy
                figures["fp32_layers"] = policy.fp32_layers
        return figures

    found = []
    for budget in args.budgets:
        timed = args.quick and parse_budget(budget).kind == "latency"  # the smoke run's slowest rows
        strategies = QUICK_FEW if timed else STRATEGIES
        found += strategy_rows(dense, example, calibration, budget, args, measure, strategies)
    return base, found


def text_rows(args: argparse.Namespace) -> dict[str, Any] | None:
    """all-MiniLM-L6-v2 (a tiny random BERT with --quick) at each text budget: cosine to the dense
    sentence embeddings and top-1 neighbour kept on held-out python-docs lines, as the post-training
    benchmark measures them; None without transformers or the model."""
    transformers = _optional("transformers")
    folder = None if transformers is None else (_tiny_bert(transformers) if args.quick else _minilm())
    if folder is None:
        return None
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    dense = transformers.AutoModel.from_pretrained(folder).eval()
    text = load_text(_quick_text() if args.quick else "text:python-docs")
    calibration = batches(tok, text.train[: args.text_calibration], batch_size=16, max_length=128)
    held_out = batches(tok, text.test[: 32 if args.quick else None], batch_size=32, max_length=128)
    reference = embeddings(dense, held_out)
    example = {k: v[:2] for k, v in held_out[0].items()}
    found = []
    text_args = argparse.Namespace(**{**vars(args), "evaluations": args.evaluations // 2})
    text_args.evaluation_samples = args.evaluation_samples // 2

    def measure(space: Any, policy: zp.Policy) -> dict[str, float]:
        kept = fidelity(reference, space.construct(), held_out)
        return {"cosine": kept.cosine, "retrieval": kept.retrieval, "samples": kept.samples}

    for budget in args.text_budgets:
        strategies = QUICK_FEW if args.quick else STRATEGIES
        found += strategy_rows(dense, example, calibration, budget, text_args, measure, strategies)
    name = "tiny random BERT" if args.quick else "all-MiniLM-L6-v2"
    held = found[0]["samples"]
    setup = f"{name}, {args.text_calibration} calibration lines, {held} held-out lines of python-docs"
    return {"model": name, "setup": setup, "rows": found}


MEASURED: list[int] = []


def _counting(losses: Any) -> Any:
    """``Evaluator.losses`` that counts each candidate measured (one refit), for the table."""

    def counted(self: Evaluator, removed: Any, int8: Any) -> list[float]:
        MEASURED.append(1)
        return losses(self, removed, int8)

    return counted


Evaluator.losses = _counting(Evaluator.losses)


def searched_best(
    by: dict[str, dict[str, Any]], key: str, names: tuple[str, ...] = SEARCHED
) -> tuple[str, bool]:
    """The best of ``names`` by ``key``, and whether it beats both baselines."""
    best = max((n for n in names if n in by), key=lambda name: by[name][key])
    return best, by[best][key] >= max(by["global"][key], by["uniform"][key])


def learned_goals(label: str, by: dict[str, dict[str, Any]], key: str, slack: float) -> list[str]:
    """Issue 30's goals for one budget: every learned strategy beats global and uniform, and the best
    of them is within ``slack`` of dp or better."""
    lines = []
    for name in (n for n in LEARNED if n in by):
        beats = by[name][key] > max(by["global"][key], by["uniform"][key])
        lines.append(goal_line(f"{label}: {name} {by[name][key]:.4f} beats global and uniform", beats))
    if not lines:
        return []
    best, _ = searched_best(by, key, LEARNED)
    gap = by["dp"][key] - by[best][key]
    lines.append(
        goal_line(f"{label}: {best} within {slack:g} of dp or better (gap {gap:+.4f})", gap <= slack)
    )
    return lines


def within(row: dict[str, Any]) -> bool:
    """The row meets its budget: the exact MACs share, or the measured time within 10 % of it."""
    budget = parse_budget(row["budget"])
    if budget.kind == "latency":
        return row["latency"]["share"] <= budget.keep * 1.10
    return row["macs_share"] <= budget.keep + 1e-9


def reached(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose strategy met its budget."""
    return [r for r in found if "unreachable" not in r]


def quality(row: dict[str, Any]) -> str:
    """What a row's quality is: the int8 file's accuracy on an int8 budget, else the model's."""
    return "int8_accuracy" if "int8_accuracy" in row else "accuracy"


def _accuracy_cell(row: dict[str, Any]) -> str:
    if "int8_accuracy" not in row:
        return f"{row['accuracy']:.2%}"
    return f"{row['int8_accuracy']:.2%} int8 (fp32: {', '.join(row['fp32_layers']) or 'none'})"


def goals(base: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    """The issue's goals that this run can decide, each met or not."""
    lines = []
    found = reached(found)
    for budget in dict.fromkeys(r["budget"] for r in found):
        by = {r["strategy"]: r for r in found if r["budget"] == budget}
        if not {"dp", "global", "uniform"} <= by.keys():
            lines.append(f"- {budget}: dp or a baseline could not meet the budget: nothing to compare")
            continue
        key = quality(by["dp"])
        best, beats = searched_best(by, key)
        lines.append(goal_line(f"{budget}: {best} {by[best][key]:.2%} beats global and uniform", beats))
        lines.append(goal_line(f"{budget}: every strategy within the budget", all(map(within, by.values()))))
        lines += learned_goals(budget, by, key, 0.003)
        timed = [r["latency"] for r in by.values() if r["latency"]]
        if timed:
            off = max(abs(t["off"]) for t in timed)
            lines.append(
                goal_line(
                    f"{budget}: predicted latency within 10 % of measured (worst {off:.1%})", off <= 0.10
                )
            )
    two = [r for r in found if r["budget"] == "macs=0.5" and r["strategy"] == "dp"]
    if two:
        loss = (base["accuracy"] - two[0]["accuracy"]) * 100
        lines.append(goal_line(f"2x fewer MACs with dp within 1.5 pt of dense ({loss:.2f} pt)", loss <= 1.5))
    slowest = max((r["seconds"] for r in found if r["strategy"] == "dp"), default=0.0)
    lines.append(goal_line(f"the dp search under 3 minutes (slowest {slowest:.0f} s)", slowest < 180))
    return lines


def text_goals(text: dict[str, Any]) -> list[str]:
    """The encoder's goals: cosine 0.95 at 1.5x and 0.90 at 2x fewer MACs with the better searched
    strategy, and that strategy ahead of global and uniform."""
    lines = []
    for budget, bar in (("macs=0.667", 0.95), ("macs=0.5", 0.90)):
        by = {r["strategy"]: r for r in text["rows"] if r["budget"] == budget}
        if "dp" not in by:
            continue
        best, beats = searched_best(by, "cosine")
        cosine = by[best]["cosine"]
        lines.append(
            goal_line(f"{text['model']} {budget}: {best} cosine {cosine:.4f} >= {bar}", cosine >= bar)
        )
        lines.append(goal_line(f"{text['model']} {budget}: {best} beats global and uniform", beats))
        lines += learned_goals(f"{text['model']} {budget}", by, "cosine", 0.005)
    return lines


def _latency_cells(row: dict[str, Any]) -> str:
    """Measured and predicted share of the dense time, for a latency budget's row."""
    timed = row["latency"]
    return f"{timed['share']:.1%} | {timed['predicted_share']:.1%}" if timed else "— | —"


def markdown(report: dict[str, Any]) -> str:
    base = report["dense"]
    smoke = ["**Smoke run (--quick): not a published result.**", ""] if report["settings"]["quick"] else []
    out = [
        "# Policy search: every strategy at the same budget",
        "",
        *smoke,
        f"Command (from the repository root): `{report['command']}`",
        "",
        f"Machine: {report['machine']['summary']}. Total wall time {report['seconds']:.0f} s.",
        "",
        f"{base['model']} on {base['data']}: dense {base['accuracy']:.2%} on {base['test']} test images, "
        f"{base['macs']:,} MACs per sample; {report['settings']['calibration']} calibration images; "
        "post-training, OBS refit; widths multiples of 8, `global` ranks by score / cost^0.5 (the "
        "post-training benchmark's settings). Latency: share of the dense model's median time at batch "
        "64 on one thread, the result timed against the dense model interleaved (measured) and the "
        "calibrated layer table's prediction. On an int8 budget the accuracy is the int8 file's in ONNX "
        "Runtime (activations calibrated on 4 batches), the layers the policy keeps fp32 named.",
        "",
        "| budget | strategy | accuracy | vs dense (pt) | MACs left | latency measured | predicted | "
        "predicted error | measured loss | candidates measured | search s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "unreachable" in r:
            out.append(f"| {r['budget']} | {r['strategy']} | {r['unreachable']} |" + " |" * 8)
            continue
        out.append(
            f"| {r['budget']} | {r['strategy']} | {_accuracy_cell(r)} | "
            f"{(r[quality(r)] - base['accuracy']) * 100:+.2f} | {r['macs_share']:.1%} | "
            f"{_latency_cells(r)} | {r['error']:.4g} | {r['loss']:.4g} | {r['evaluations']} | "
            f"{r['seconds']:.1f} |"
        )
    text = report.get("text")
    if text:
        out += ["", f"## {text['setup']}", ""]
        out += [
            "| budget | strategy | cosine | top-1 kept | MACs left | predicted error | measured loss | "
            "candidates measured | search s |"
        ]
        out += ["|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in text["rows"]:
            out.append(
                f"| {r['budget']} | {r['strategy']} | {r['cosine']:.4f} | {r['retrieval']:.1%} | "
                f"{r['macs_share']:.1%} | {r['error']:.4g} | {r['loss']:.4g} | {r['evaluations']} | "
                f"{r['seconds']:.1f} |"
            )
    return "\n".join([*out, "", *report["goals"], "", *additivity(report), ""])


def additivity(report: dict[str, Any]) -> list[str]:
    """How well the summed (predicted) error orders the strategies as their measured loss does: the
    Spearman rank correlation per budget, over the strategies."""
    lines = [
        "Additivity: rank correlation of the predicted (summed) error with the measured loss, over the "
        "strategies of one budget (1: the sum orders them as the measurement does)."
    ]
    text = report.get("text") or {"model": "", "rows": []}
    for model, found in ((report["dense"]["model"], report["rows"]), (text["model"], text["rows"])):
        for budget in dict.fromkeys(r["budget"] for r in found):
            by = [r for r in reached(found) if r["budget"] == budget]
            rho = _spearman([r["error"] for r in by], [r["loss"] for r in by])
            lines.append(f"- {model} {budget}: {rho:+.2f}")
    return lines


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (no ties expected)."""

    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=values.__getitem__)
        return [order.index(i) for i in range(len(values))]

    rx, ry, n = ranks(xs), ranks(ys), len(xs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1)) if n > 1 else 1.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="search.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the digits CNN, one budget: a smoke run")
    parser.add_argument("--budgets", nargs="+", default=None, help=f"budgets (default {' '.join(BUDGETS)})")
    parser.add_argument("--calibration", type=int, default=None, help="calibration images (512; 128 quick)")
    parser.add_argument(
        "--text-budgets", nargs="+", default=None, help="MiniLM budgets (macs=0.667 macs=0.5)"
    )
    parser.add_argument("--text-calibration", type=int, default=None, help="lines (256; 32 quick)")
    parser.add_argument("--no-text", action="store_true", help="skip the sentence encoder")
    parser.add_argument("--evaluations", type=int, default=None, help="evolution's candidates (24; 2 quick)")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="each model timed at least (0.5 s; 0.02 quick)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.epochs = 2 if args.quick else 4
    args.calibration = args.calibration or (128 if args.quick else 512)
    args.subset = None if args.quick else 20000
    quick_budgets = ["macs=0.5", "latency=0.5@torch"]
    args.budgets = args.budgets or (quick_budgets if args.quick else [*BUDGETS])
    args.evaluations = args.evaluations if args.evaluations is not None else (2 if args.quick else 24)
    args.evaluation_samples = 128
    args.latency_seconds = args.latency_seconds or (0.02 if args.quick else 0.5)
    args.text_budgets = args.text_budgets or (["macs=0.667"] if args.quick else ["macs=0.667", "macs=0.5"])
    args.text_calibration = args.text_calibration or (32 if args.quick else 256)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    start = time.perf_counter()
    base, found = rows(args)
    encoder = None if args.no_text else text_rows(args)
    settings = {"quick": args.quick, "calibration": args.calibration, "budgets": args.budgets}
    settings |= {"evaluations": args.evaluations, "latency_seconds": args.latency_seconds}
    settings |= {"text_budgets": args.text_budgets, "text_calibration": args.text_calibration}
    report = {"command": command_line(__file__, argv), "machine": machine_info(), "settings": settings}
    report |= {
        "dense": base,
        "rows": found,
        "text": encoder,
        "goals": goals(base, found) + (text_goals(encoder) if encoder else []),
        "seconds": time.perf_counter() - start,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(report, indent=1) + "\n")
    written = markdown(report)
    (out / "search.md").write_text(written)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
