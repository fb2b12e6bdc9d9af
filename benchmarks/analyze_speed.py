"""B3-analysis: how long zigprune takes to analyse (and construct) a model, against Torch-Pruning.

For every benchmark model (built from a config with random weights, in eval mode) this measures,
in one process and one run:

* ``zp.analyze(model, inputs, check=False)``: tracing plus the zero-invariant group analysis;
* ``zp.analyze(model, inputs, check=True)``: the same plus the construction check (a copy of the
  model has half of every family's groups zeroed, is constructed and must reproduce the outputs);
* ``space.construct()`` (default ``check=True``, so it includes the output comparison) after a
  random 50 % of the groups (fixed seed) have been zeroed, reported separately;
* Torch-Pruning's ``tp.DependencyGraph().build_dependency(model, example_inputs=...)``, the closest
  equivalent step of that library (Hugging Face models get their dict of keyword inputs, which
  Torch-Pruning calls as ``model(**inputs)``).

Each timing is repeated ``--repeats`` times (wall clock, ``time.perf_counter``) and the median is
reported; the raw times are kept in the JSON. Before the first case an untimed warm-up on a tiny
model pays the one-off import/first-call costs of both libraries. Peak memory is reported as the
largest resident-set-size rise above the value at the start of a call, sampled every 5 ms from
``/proc/self/statm`` by a background thread (Linux only; ``null`` elsewhere) in one further, untimed
call: the sampler holds the GIL often enough to slow a Python-heavy call by a third. ``tracemalloc`` is
not used because it does not see PyTorch's allocations.

Models: BERT-base (``BertConfig()`` defaults: 12 layers, hidden 768, ~110M parameters, SDPA
attention, ``input_ids``/``attention_mask`` of shape 1x128), a 24-layer BERT with the same
settings, and the zoo's ResNet-50 (``models.create("resnet50")``) on a 1x3x224x224 input. A depth
sweep (BERT, hidden 768, 2/4/8/12/24 layers) shows how analysis time (``check=False``) and
Torch-Pruning's time grow with depth; sweep points whose config equals a main model reuse that
model's measurements.

Scale (``analyze_scale.py``): a BERT width sweep at fixed depth (analyze / export alone must stay
flat while parameters grow), a Llama-2-7B-shaped decoder analysed on the meta device (it does not fit
in memory) and a ~1.1B decoder saved as shards, planned on meta and loaded slim (peak RSS against
the checkpoint's size).

Run from the repository root::

    PYTHONPATH=src python benchmarks/analyze_speed.py                 # full run (minutes)
    PYTHONPATH=src python benchmarks/analyze_speed.py --quick --out /tmp/b3   # tiny models, seconds

It prints Markdown tables and writes ``analyze_speed.json`` (results plus machine info),
``analyze_speed.md`` (the tables and the exact command) and ``analyze_speed.png`` (analysis time
against the number of BERT layers) to ``--out`` (default ``benchmarks/results/analyze_speed``).
The exit status is 1 when any case raised (its traceback is printed and kept in the JSON), else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

try:
    import zigprune as zp
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import zigprune as zp
from zigprune import models
from zigprune.core import trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze_scale import SEQ as SCALE_SEQ
from analyze_scale import (
    end_to_end,
    end_to_end_table,
    goal_lines,
    meta_case,
    meta_table,
    width_sweep,
    width_table,
)
from analyze_speed_report import (
    fit_line,
    headline_ratios,
    main_table,
    memory_table,
    plot,
    sweep_table,
)
from common import MemoryPeak, command_line, machine_info

SAMPLE_MEMORY = True


DEFAULT_OUT = Path("benchmarks/results/analyze_speed")
STEM = "analyze_speed"

Inputs = torch.Tensor | dict[str, torch.Tensor]
Builder = Callable[[], tuple[nn.Module, Inputs]]


# -- models ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertSpec:
    """A randomly initialised ``BertModel`` (SDPA attention) and its text input."""

    layers: int
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    seq: int = 128

    def build(self, seed: int) -> tuple[nn.Module, Inputs]:
        import transformers

        config = transformers.BertConfig(
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            attn_implementation="sdpa",
        )
        torch.manual_seed(seed)
        model = transformers.BertModel(config).eval()
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(config.vocab_size, (1, self.seq), generator=g)
        return model, {"input_ids": input_ids, "attention_mask": torch.ones(1, self.seq, dtype=torch.long)}


@dataclass(frozen=True)
class ZooSpec:
    """A zoo model on a random image batch of one."""

    name: str
    image: int

    def build(self, seed: int) -> tuple[nn.Module, Inputs]:
        torch.manual_seed(seed)
        model = models.create(self.name).eval()
        g = torch.Generator().manual_seed(seed)
        return model, torch.randn(1, 3, self.image, self.image, generator=g)


Spec = BertSpec | ZooSpec


@dataclass
class Case:
    """One benchmark case: a main model (every measurement) or a depth-sweep point."""

    label: str
    spec: Spec
    sweep: bool = False
    result: dict[str, Any] = field(default_factory=dict)


def main_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("BERT-tiny (2 layers, hidden 64)", BertSpec(2, 64, 4, 256, 16)),
            Case("BERT-tiny (4 layers, hidden 64)", BertSpec(4, 64, 4, 256, 16)),
            Case("ResNet-20 (zoo, 32x32)", ZooSpec("resnet20", 32)),
        ]
    return [
        Case("BERT-base (12 layers)", BertSpec(12)),
        Case("BERT-24 (24 layers)", BertSpec(24)),
        Case("ResNet-50 (zoo, 224x224)", ZooSpec("resnet50", 224)),
    ]


def sweep_cases(quick: bool) -> list[Case]:
    if quick:
        return [Case(f"sweep {n}", BertSpec(n, 64, 4, 256, 16), sweep=True) for n in (1, 2, 4)]
    return [Case(f"sweep {n}", BertSpec(n), sweep=True) for n in (2, 4, 8, 12, 24)]


# -- measurement -----------------------------------------------------------------------------------------


class PeakRSS:
    """Context manager: the largest RSS rise (MiB) above the value at entry, sampled by a thread."""

    def __enter__(self) -> PeakRSS:
        self.delta_mib: float | None = None
        self._memory = MemoryPeak()
        return self

    def __exit__(self, *exc: object) -> None:
        memory = self._memory.stop()
        if memory.start_rss is not None and memory.peak_rss is not None:
            self.delta_mib = max(memory.peak_rss - memory.start_rss, 0) / 2**20


def measure(fn: Callable[[], Any], repeats: int) -> tuple[list[float], float | None, Any]:
    """Run ``fn`` ``repeats`` times timed, then once more for memory: (wall times in s, peak RSS rise in
    MiB, last result). The sampling thread takes the GIL every 5 ms, which slows Python-heavy calls by
    a third, so no timed run has it. A --quick run samples no memory (None)."""
    times, results = paired([fn], repeats)
    if not SAMPLE_MEMORY:
        return times[0], None, results[0]
    peak, result = peak_rss(fn)
    return times[0], peak, result


def paired(fns: list[Callable[[], Any]], repeats: int) -> tuple[list[list[float]], list[Any]]:
    """Time ``fns`` in turn, ``repeats`` rounds (garbage collected before each call), so that a ratio
    of two of them compares calls made moments apart on this shared machine: (times per fn, each fn's
    last result)."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None for _ in fns]
    for _ in range(repeats):
        for i, (fn, out) in enumerate(zip(fns, times)):
            results[i] = None
            gc.collect()
            start = time.perf_counter()
            results[i] = fn()
            out.append(time.perf_counter() - start)
    return times, results


def peak_rss(fn: Callable[[], Any]) -> tuple[float | None, Any]:
    """One untimed call of ``fn`` with the RSS sampler: (peak rise in MiB, result); none in --quick."""
    if not SAMPLE_MEMORY:
        return None, None
    gc.collect()
    with PeakRSS() as mem:
        result = fn()
    return mem.delta_mib, result


def tp_build(model: nn.Module, inputs: Inputs) -> Any:
    """Torch-Pruning's dependency graph; a dict is passed as is (TP calls ``model(**inputs)``)."""
    import torch_pruning as tp

    with torch.enable_grad():  # TP follows autograd's grad_fn graph
        return tp.DependencyGraph().build_dependency(model, example_inputs=inputs, verbose=False)


def _summary(times: list[float], peak: float | None) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "times_s": times, "peak_rss_delta_mib": peak}


def run_main(case: Case, repeats: int, seed: int) -> dict[str, Any]:
    model, inputs = case.spec.build(seed)
    full = zp.count(model, inputs)
    res: dict[str, Any] = {"params": full["params"], "macs": full["macs"]}

    traced = trace.as_inputs(inputs, model)
    export = lambda: trace.export(model, traced)  # noqa: E731
    analyze = lambda: zp.analyze(model, inputs, check=False)  # noqa: E731
    rounds = max(repeats, 5) if repeats > 1 else 1  # a --quick run (one repeat) times one round
    (export_times, analyze_times), (_, space) = paired([export, analyze], rounds)
    res["num_groups_check_off"] = space.num_groups
    del space
    res["analyze_check_off"] = _summary(analyze_times, peak_rss(analyze)[0])
    res["torch_export"] = _summary(export_times, peak_rss(export)[0])
    res["ratio_analyze_export"] = statistics.median(a / e for a, e in zip(analyze_times, export_times))

    times, peak, space = measure(lambda: zp.analyze(model, inputs, check=True), repeats)
    res["analyze_check_on"] = _summary(times, peak)
    res["num_groups"] = space.num_groups

    times, peak, _ = measure(lambda: tp_build(model, inputs), repeats)
    res["tp_build_dependency"] = _summary(times, peak)

    # Zeroing edits the model in place, so it comes after every measurement that needs the original.
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(space.num_groups, generator=g)[: space.num_groups // 2]
    space.zero_(chosen)
    times, peak, slim = measure(space.construct, repeats)
    res["construct"] = _summary(times, peak)
    res["zeroed_groups"] = int(chosen.numel())
    res["slim"] = zp.count(slim, inputs)
    tp_s = res["tp_build_dependency"]["median_s"]
    res["ratio_zigprune_tp"] = res["analyze_check_off"]["median_s"] / tp_s
    res["ratio_export_tp"] = res["torch_export"]["median_s"] / tp_s
    return res


def run_sweep(case: Case, repeats: int, seed: int) -> dict[str, Any]:
    model, inputs = case.spec.build(seed)
    res: dict[str, Any] = {"params": zp.count(model, inputs)["params"]}
    times, peak, space = measure(lambda: zp.analyze(model, inputs, check=False), repeats)
    res["analyze_check_off"] = _summary(times, peak)
    res["num_groups_check_off"] = space.num_groups
    del space
    times, peak, _ = measure(lambda: tp_build(model, inputs), repeats)
    res["tp_build_dependency"] = _summary(times, peak)
    return res


def sweep_point(case: Case) -> dict[str, Any]:
    """The depth-sweep row of a case (or None values when it failed)."""
    assert isinstance(case.spec, BertSpec)
    res = case.result
    row: dict[str, Any] = {
        "layers": case.spec.layers,
        "hidden": case.spec.hidden,
        "seq": case.spec.seq,
        "params": res.get("params"),
        "zigprune_s": None,
        "tp_s": None,
        "zigprune_s_per_layer": None,
        "num_groups_check_off": res.get("num_groups_check_off"),
    }
    if "error" in res:
        row["error"] = res["error"]
        return row
    row["zigprune_s"] = res["analyze_check_off"]["median_s"]
    row["tp_s"] = res["tp_build_dependency"]["median_s"]
    row["zigprune_s_per_layer"] = row["zigprune_s"] / case.spec.layers
    row["zigprune_times_s"] = res["analyze_check_off"]["times_s"]
    row["tp_times_s"] = res["tp_build_dependency"]["times_s"]
    if "reused_from" in res:
        row["reused_from"] = res["reused_from"]
    return row


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares ``y = intercept + slope * x`` and its R²; None with fewer than two points."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return {
        "intercept_s": intercept,
        "slope_s_per_layer": slope,
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
    }


def warm_up(seed: int) -> None:
    """Untimed: pay one-off import and first-call costs of both libraries on a tiny model."""
    for spec in (BertSpec(1, 32, 2, 64, 8), ZooSpec("resnet20", 32)):
        model, inputs = spec.build(seed)
        space = zp.analyze(model, inputs, check=True)
        space.zero_(range(space.num_groups // 2))
        space.construct()
        tp_build(model, inputs)


# -- reporting -------------------------------------------------------------------------------------------


def run_scale(quick: bool, seed: int, no_progress: bool) -> dict[str, Any]:
    """The width sweep here, and the meta / end-to-end cases each in a child process (analyze_scale)."""
    layers = 2 if quick else 4

    def build(hidden: int) -> tuple[nn.Module, Inputs]:
        heads = max(hidden // 64, 2)
        return BertSpec(layers, hidden, heads, 4 * hidden, 16 if quick else 128).build(seed)

    steps = tqdm(total=3, desc="B3-analysis scale", disable=no_progress, file=sys.stderr)
    sweep = width_sweep(quick, build, paired)
    steps.update()
    meta = meta_case(quick)
    steps.update()
    e2e = end_to_end(quick)
    steps.update()
    steps.close()
    return {"width_layers": layers, "width_sweep": sweep, "meta": meta, "end_to_end": e2e}


# -- driver ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="analyze_speed.py",
        description=(
            "B3-analysis benchmark: time zigprune's analyze (check off/on) and construct against\n"
            "Torch-Pruning's DependencyGraph.build_dependency on BERT-base, a 24-layer BERT and\n"
            "ResNet-50 (224x224), plus a BERT depth sweep (2-24 layers). Run from the repository root."
        ),
        epilog=(
            "examples:\n"
            "  PYTHONPATH=src python benchmarks/analyze_speed.py                      # full run, minutes\n"
            "  PYTHONPATH=src python benchmarks/analyze_speed.py --quick --out /tmp/b3  # smoke test"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models (BERT hidden 64 with 2 and 4 layers, seq 16; ResNet-20 at 32x32; sweep 1/2/4 "
        "layers) and one repeat: a smoke test that still exercises every code path",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="timings per measurement, the median is reported (default: 3, or 1 with --quick)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for weights, inputs and the zeroed groups (default: 0)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory for {STEM}.{{json,md,png}} (default: {DEFAULT_OUT})",
    )
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bar")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    global SAMPLE_MEMORY
    SAMPLE_MEMORY = not args.quick  # a smoke run checks the code paths, not the figures
    mains, sweeps = main_cases(args.quick), sweep_cases(args.quick)

    try:
        warm_up(args.seed)
    except Exception:  # each case reports its own failure below
        tqdm.write(f"warm-up failed (continuing):\n{traceback.format_exc()}", file=sys.stderr)
    machine = machine_info()  # now: the source digest should match the code the warm-up imported
    failures: list[tuple[str, str]] = []
    done: dict[BertSpec, Case] = {}
    bar = tqdm(mains + sweeps, desc="B3-analysis", unit="case", disable=args.no_progress, file=sys.stderr)
    for case in bar:
        bar.set_postfix_str(case.label)
        reuse = done.get(case.spec) if case.sweep and isinstance(case.spec, BertSpec) else None
        if reuse is not None and "error" not in reuse.result:
            keep = ("params", "analyze_check_off", "num_groups_check_off", "tp_build_dependency")
            case.result = {k: reuse.result[k] for k in keep}
            case.result["reused_from"] = reuse.label
            continue
        try:
            run = run_sweep if case.sweep else run_main
            case.result = run(case, args.repeats, args.seed)
        except Exception:
            tb = traceback.format_exc()
            case.result = {"error": tb}
            failures.append((case.label, tb))
            tqdm.write(f"\n{case.label} failed:\n{tb}", file=sys.stderr)
        if not case.sweep and isinstance(case.spec, BertSpec):
            done[case.spec] = case
        gc.collect()
    bar.close()

    scale = run_scale(args.quick, args.seed, args.no_progress)
    for key in ("meta", "end_to_end"):
        error = scale[key].get("error") or scale[key].get("save", {}).get("error")
        error = error or scale[key].get("load", {}).get("error")
        if error:
            failures.append((f"scale: {key}", error))

    rows = [sweep_point(c) for c in sweeps]
    ok = [r for r in rows if r["zigprune_s"] is not None]
    fits = {
        "zigprune": linear_fit([r["layers"] for r in ok], [r["zigprune_s"] for r in ok]),
        "tp": linear_fit([r["layers"] for r in ok], [r["tp_s"] for r in ok]),
    }
    hidden = sweeps[0].spec.hidden if isinstance(sweeps[0].spec, BertSpec) else 0
    command = command_line(__file__, argv)
    total = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "B3-analysis",
        "command": command,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"quick": args.quick, "repeats": args.repeats, "seed": args.seed, "zeroed_fraction": 0.5},
        "total_wall_s": total,
        "models": [
            {"name": c.label, "spec": {"kind": type(c.spec).__name__, **vars(c.spec)}, **c.result}
            for c in mains
        ],
        "scale": scale,
        "depth_sweep": {
            "rows": rows,
            "fits": fits,
            "hidden": hidden,
            "timed": "zigprune analyze check=False",
        },
    }
    (args.out / f"{STEM}.json").write_text(json.dumps(report, indent=2) + "\n")

    tables = (
        f"### Analysis and construction time (median of {args.repeats}, seconds)\n\n{main_table(mains)}\n\n"
        f"### Depth sweep: BERT, hidden {hidden}, zigprune analyze with check=False\n\n"
        f"{sweep_table(rows)}\n\n"
        f"{fit_line('zigprune', fits['zigprune'])}\n{fit_line('Torch-Pruning', fits['tp'])}\n\n"
        f"### Width sweep: BERT, {scale['width_layers']} layers, analyze (check off) against the trace\n\n"
        f"{width_table(scale['width_sweep'])}\n\n"
        "### Larger than memory: a Llama-2-7B-shaped decoder on the meta device (one process)\n\n"
        f"{meta_table(scale['meta'])}\n\n"
        "### End to end: a random decoder saved as shards, planned on meta, only the slim model loaded\n\n"
        f"{end_to_end_table(scale['end_to_end'])}\n\n"
        "### Goals\n\n"
        + (
            "(a --quick run: the goals apply to the full run)"
            if args.quick
            else "\n".join(goal_lines(headline_ratios(mains), scale))
        )
        + "\n"
    )
    print(tables)
    m = report["machine"]
    md = [
        "# B3-analysis: analysis speed",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs ({m['torch_num_threads']} torch threads), "
        f"{m['platform']}; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
        f"torch-pruning {m['torch_pruning']}, zigprune {m['zigprune']}. Seed {args.seed}; "
        f"{report['timestamp']}; whole run {total:.0f} s.",
        "",
        tables,
        "### Peak RSS rise during the call (MiB, one untimed call)\n",
        memory_table(mains),
        "",
        "### Notes",
        "",
        "- Models are built from configs with random weights, in eval mode, on CPU; batch 1. BERT uses SDPA "
        "attention with `input_ids` and an all-ones `attention_mask`.",
        "- *check off/on*: `zp.analyze(model, inputs, check=False/True)`; check on adds the construction "
        "probe (half of every family's groups zeroed on a copy, constructed, outputs compared).",
        "- *TP build_dependency*: `tp.DependencyGraph().build_dependency(model, example_inputs=inputs)` "
        "(dict inputs are passed through; TP calls `model(**inputs)`).",
        "- *ratio zigprune/TP*: analyze (check off) / TP build_dependency.",
        "- *torch.export alone*: the tracing step by itself (`torch.export.export(..., strict=False)` in "
        "eval mode, as `zp.analyze` calls it), and its ratio to TP build_dependency: the floor of "
        "analyze's time while the analysis traces with torch.export.",
        "- *construct*: `space.construct()` (default `check=True`, which runs both models and compares) "
        "after zeroing a random 50 % of the groups of the check-on space (fixed seed).",
        "- *num_groups*: prunable groups after the check (`space.num_groups`).",
        "- Sweep points with the same config as a main model reuse that model's timings.",
        "- Memory: largest RSS rise above the value at the start of the call, sampled every 5 ms in one "
        "further untimed call (the sampler slows a timed one); it reads 0 when the call"
        " only reuses memory the process already holds (freed by earlier calls).",
        "- *analyze / export alone*: the headline of analysis cost, since the trace is its floor: "
        "export alone and analyze (check off) are timed in turn, 5 rounds, and the ratio is the median "
        "of the rounds' ratios (calls moments apart compare fairly on this shared machine); goal "
        "<= 1.3x on BERT-base and ResNet-50, and flat over the width sweep (parameters grow, the graph "
        "does not: the labels are per dim, so cost follows graph nodes, not weight elements).",
        "- *meta*: `LlamaConfig` with Llama-2-7B's sizes built under `torch.device('meta')`, input_ids "
        f"1x{SCALE_SEQ} on meta, in a fresh child process; peak RSS is that process's `VmHWM` "
        "(imports included). Goals: analyze <= 2x export alone, peak RSS <= 4 GB. Torch-Pruning's "
        "`build_dependency` on the same meta model is the anchor; its error is quoted when it fails.",
        "- *end to end*: the decoder is built with random weights and saved by `save_pretrained` "
        "(1 GB shards) in one child; a second child builds it under `accelerate.init_empty_weights()`, "
        "analyzes on meta, runs `zp.prune(method='magnitude', by='params', target=0.5)` with norms "
        "read from the shards (`zp.Checkpoint`), then `zp.load_pruned` and one forward pass. Its peak "
        "anonymous memory (resident minus file-backed pages, sampled every 20 ms; imports included) is "
        "set against the checkpoint's size; peak RSS also counts the checkpoint pages mapped while "
        "they are read, which are page cache the kernel drops under pressure.",
    ]
    if failures:
        md += ["", "### Failures", ""]
        for label, tb in failures:
            md += [f"**{label}**", "", "```", tb.rstrip(), "```", ""]
    (args.out / f"{STEM}.md").write_text("\n".join(md) + "\n")
    plot(rows, fits, hidden, args.out / f"{STEM}.png")
    print(f"wrote {args.out / STEM}.{{json,md,png}} in {total:.0f} s", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
