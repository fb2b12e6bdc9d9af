"""``zigprune search``: every strategy of ``zp.search`` at one budget on a trained model, each applied
post-training and measured; the chosen strategy's widths saved as ``policy.json`` for
``zigprune prune --policy`` (or ``zp.prune(..., policy=zp.load_policy(path))``)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.analysis import analyze
from ..core.policy import Policy
from ..data.text import is_text
from ..deploy.quantize import int8_file
from ..deploy.session import OnnxModule
from ..errors import ConfigError, Interrupted, TargetError, first_line
from ..io.atomic import atomic_write
from ..measure.timing_cache import TimingCache
from ..posttrain import METHODS, prune
from ..search import STRATEGIES, parse_budget, save_policy, search
from ..search.budget import budget_list
from ..search.evolution import Evaluator
from ..search.latency import LatencyMeter
from ..search.score_cache import cached_scores
from .config import check_number, check_text_model, default_out, limits_of
from .options import Shaping, Source, option, redefault
from .prune_job import prepare
from .rundir import check_dir, start_dir, write_json
from .search_plot import PLOT, plot_search
from .state import Stage

POLICY = "policy.json"
TABLE = "search.md"
RESULTS = "search.json"
#: Where Ctrl-C leaves the learned strategies' agents, for the same command to continue them.
AGENTS = "agents"
#: Calibration batches an int8 file's activation ranges are found on.
INT8_BATCHES = 4


@dataclass
class SearchConfig(Shaping, Source):
    """Everything that determines a search (saved as ``run.json``): a trained model, the budget, the
    strategy whose policy is kept, and whether the others run beside it for comparison."""

    model: str = redefault(Source, "model", "resnet20")
    data: str = redefault(Source, "data", "fashion-mnist")
    budget: str = option(
        "macs=0.5", help="what the slim model may cost: macs=0.5 keeps half the MACs, params=0.4, macs=2x, "
        "latency=0.5@onnxruntime (half the dense time there; runtimes: torch, onnxruntime, "
        "onnxruntime-int8); several for a quality-vs-budget front: macs=0.4,0.5,0.6 (default {default})"
    )  # fmt: skip
    evaluations: int = option(
        24, metavar="N", type=int, help="evolution: candidates measured after its seeds ({default})"
    )
    latency_batch: int = option(
        64, metavar="N", type=int, help="latency budgets: rows per timed call ({default})"
    )
    threads: int = option(1, metavar="N", type=int, help="latency budgets: threads while timing ({default})")
    strategy: str = option(
        "dp", choices=list(STRATEGIES), help="the strategy whose policy is saved ({default})"
    )
    compare: bool = option(True, kind="off", help="skip the other strategies (run only --strategy)")
    mixed: bool = option(
        True, kind="off", help="int8 runtimes: keep every layer int8 (no layer kept in fp32)"
    )
    gnn_agent: str | None = option(
        None, metavar="FILE", help="gnn-rl: write the trained agent here; when FILE exists, apply the "
        "agent in it (trained on another model) without training"
    )  # fmt: skip
    method: str = option("obs", choices=list(METHODS), help="how groups are scored and refit ({default})")
    calibration: int = option(512, metavar="N", type=int, help="calibration samples (default {default})")
    batch_size: int | None = option(
        None, metavar="N", type=int, help="calibration batch (text 16, images 128)"
    )
    eval_data: str | None = option(
        None, metavar="text:FILE", group="what", help="text runs: measure on this file"
    )

    def __post_init__(self) -> None:
        if self.batch_size is None:
            self.batch_size = 16 if is_text(self.data) else 128
        for name in ("calibration", "batch_size", "max_length", "round_to", "latency_batch", "threads"):
            check_number(name, getattr(self, name), 1, integer=True)
        check_number("evaluations", self.evaluations, 0, integer=True)
        check_text_model(self.model, self.data)
        limits_of(self)
        budget_list(self.budget)
        STRATEGIES.check(self.strategy)
        if self.method not in METHODS:
            raise ConfigError(f"--method is {self.method!r}; use one of {', '.join(METHODS)}")

    @property
    def strategies(self) -> list[str]:
        others = [s for s in STRATEGIES if s != self.strategy] if self.compare else []
        return [self.strategy, *others]


def search_run(
    config: SearchConfig,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Search ``config.model`` into ``out`` (default ``runs/<model>-<data>-search``); return the results."""
    start = time.perf_counter()
    stage = Stage.of(log, progress)
    out = Path(out) if out is not None else default_out(config, "search")
    check_dir(out, resume=False, force=force, resumable=False)
    torch.manual_seed(config.seed)
    try:
        _, model, feed = prepare(stage, config)
        space = stage.timed("analyze", lambda: analyze(model, feed.example), "analysing the model")
        dense = feed.quality(model)
        say = f"scoring the groups with {config.method} on {feed.samples} calibration samples"
        scores, cached = stage.timed(
            "score", lambda: cached_scores(space, feed.calibration, config.method, progress=progress), say
        )
        if cached is not None and progress:
            stage.log(f"scores read from {cached}, kept by an earlier search of these weights and data")
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        evaluate = Evaluator.of(space, feed.calibration, progress=False)
        budgets, meters = budget_list(config.budget), {}
        rows, policies = [], {}
        for budget in budgets:
            runtime = parse_budget(budget).runtime
            if runtime not in meters:
                meters[runtime] = _meter(stage, config, space, budget)
            shared = Shared(scores, meters[runtime], evaluate, out / AGENTS)
            for strategy in config.strategies:
                try:
                    row, policy = _one(stage, config, space, feed, (budget, strategy), shared, progress)
                    policies[budget, strategy] = policy
                except TargetError as err:
                    if strategy == config.strategy and len(budgets) == 1:
                        raise
                    row = {"strategy": strategy, "unreachable": first_line(err)}
                rows.append({"budget": budget, **row})
                model.load_state_dict(before)
    except KeyboardInterrupt as err:
        kept = any((out / AGENTS).glob("*.safetensors"))
        then = (
            f"the learned agent was kept in {out / AGENTS}: run the same command again to continue it"
            if kept
            else "nothing was written, run the command again"
        )
        why = f"{str(err) or 'Ctrl-C'}: stopped {stage.current}; {then}"
        raise Interrupted(why, signal="SIGTERM" if str(err) == "SIGTERM" else "SIGINT") from None
    chosen = next((policies[b, config.strategy] for b in budgets if (b, config.strategy) in policies), None)
    if chosen is None:
        raise TargetError(f"{config.strategy} met none of the budgets {', '.join(budgets)}")
    start_dir(out, config)
    if (out / AGENTS).is_dir() and not any((out / AGENTS).iterdir()):
        (out / AGENTS).rmdir()
    for (budget, strategy), policy in policies.items():
        name = strategy if len(budgets) == 1 else f"{strategy}@{budget.replace('@', '-')}"
        save_policy(policy, out / "policies" / f"{name}.json")
    save_policy(chosen, out / POLICY)
    results = {"command": command, "dense": dense, "rows": rows, "budget": config.budget, "out": str(out)}
    results["budgets"] = budgets
    results["seconds"] = time.perf_counter() - start
    results["score_seconds"] = stage.seconds["score"]
    write_json(out / RESULTS, results)
    skipped = plot_search(out, results)
    picture = skipped or f"![quality at the budget, and how additive the database was]({PLOT})"
    atomic_write(out / TABLE, lambda temp: temp.write_text(f"{table(results)}\n\n{picture}\n"))
    return results


def _meter(stage: Stage, config: SearchConfig, space: Any, text: str) -> LatencyMeter | None:
    """For a latency budget, the dense model timed on the runtime and the layer table started."""
    budget = parse_budget(text)
    if budget.kind != "latency":
        return None
    timing = {"batch": config.latency_batch, "threads": config.threads, "round_to": config.round_to}
    say = f"timing the dense model on {budget.runtime} at batch {config.latency_batch}"
    return stage.timed(
        "time", lambda: LatencyMeter.build(space, budget.runtime, **timing, cache=TimingCache()), say
    )


@dataclass
class Shared:
    """What every strategy of a search run shares: one scoring pass, one latency table (for a latency
    budget), the evaluator that measures each policy's loss (its groups removed and refit, the
    outputs' distance to the dense model's) beside the error the database predicted for it, and the
    folder where learned strategies keep their agent on Ctrl-C."""

    scores: torch.Tensor
    meter: LatencyMeter | None
    evaluate: Evaluator
    checkpoints: Path | None = None


def _one(
    stage: Stage,
    config: SearchConfig,
    space: Any,
    feed: Any,
    task: tuple[str, str],
    shared: Shared,
    progress: bool,
) -> tuple[dict[str, Any], Policy]:
    """Solve for ``task`` (a budget and a strategy) on what the strategies share, measure the policy's
    loss, apply it to the model (the caller restores it) and measure its quality; ``seconds`` is the
    solver's time (with the result's latency measurements, for a latency budget)."""
    budget, strategy = task
    shaping = {"round_to": config.round_to, "cost_power": config.cost_power, "limits": limits_of(config)}
    shaping |= {"scores": shared.scores, "meter": shared.meter, "evaluations": config.evaluations}
    shaping |= {"mixed": config.mixed, "checkpoints": shared.checkpoints, "agent": config.gnn_agent}
    begin = time.perf_counter()
    policy = stage.timed(
        f"search {strategy}",
        lambda: search(space, feed.calibration, budget, strategy=strategy, **shaping, progress=progress),
        f"searching with {strategy} for {budget}",
    )
    seconds = time.perf_counter() - begin
    loss = shared.evaluate(policy.removed(space, shared.scores))
    options = {"method": config.method, "progress": progress}
    stage.timed(f"apply {strategy}", lambda: prune(space, feed.calibration, policy=policy, **options))
    if shared.meter is not None and shared.meter.mixed:
        say = f"measuring {strategy}'s int8 file ({len(policy.fp32_layers)} layers kept fp32)"
        quality = stage.timed(f"int8 {strategy}", lambda: _int8_quality(space, feed, policy), say)
    else:
        quality = feed.quality(space.model)
    row = {"strategy": strategy, **quality, "share": policy.predicted["share"], "measured": policy.measured}
    return row | {"error": policy.predicted["error"], "loss": loss, "seconds": seconds}, policy


def _int8_quality(space: Any, feed: Any, policy: Policy) -> dict[str, float]:
    """The quality of the slim model as its int8 file computes it in ONNX Runtime, the policy's fp32
    layers kept in float, activation ranges calibrated on the first calibration batches."""
    with tempfile.TemporaryDirectory(prefix="zigprune-search-") as folder:
        slim, calibration = space.construct(), feed.calibration[:INT8_BATCHES]
        int8 = int8_file(slim, feed.example, calibration, Path(folder) / "slim", policy.fp32_layers)
        return feed.quality(OnnxModule(int8))


def table(results: dict[str, Any]) -> str:
    """The strategies side by side as Markdown: quality, cost, the error the database predicted and
    the loss measured (how far the summed error is from additive); a latency budget adds the measured
    share of the dense time next to the predicted one, several budgets a budget column."""
    keys = [k for k in results["dense"] if isinstance(results["dense"][k], float)]
    timed = any(r.get("measured") for r in results["rows"])
    several = len(results.get("budgets", [results["budget"]])) > 1
    extra = " measured | predicted |" if timed else " cost left |"
    first = "| budget | strategy | " if several else "| strategy | "
    head = first + " | ".join(keys) + f" |{extra} predicted error | measured loss | solve s |"
    lines = [head, "|---|" * (1 + several) + "---:|" * (len(keys) + 4 + timed)]
    dense = " | ".join(f"{results['dense'][k]:.4f}" for k in keys)
    lines.append("| " * several + f"| dense | {dense} | 100% |" + (" 100% |" if timed else "") + " | | |")
    for r in results["rows"]:
        name = f"| {r['budget']} | {r['strategy']} |" if several else f"| {r['strategy']} |"
        if "unreachable" in r:
            lines.append(f"{name} " + " | ".join(["—"] * len(keys)) + f" | {r['unreachable']} |")
            continue
        cells = " | ".join(f"{r[k]:.4f}" for k in keys)
        measured = r["measured"]["share"] if r.get("measured") else None
        shares = f"{r['share']:.1%}"
        if timed:
            shares = (f"{measured:.1%}" if measured is not None else "—") + f" | {shares}"
        numbers = f"{r['error']:.4g} | {r['loss']:.4g} | {r['seconds']:.1f}"
        lines.append(f"{name} {cells} | {shares} | {numbers} |")
    return "\n".join(lines)
