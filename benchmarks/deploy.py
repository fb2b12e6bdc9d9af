"""What ships, side by side (issue 15): dense fp32, slim fp32 and slim int8 (ONNX Runtime), and weight
sharing of the slim model at 4 and 6 bits, for the published compress runs.

    PYTHONPATH=src python benchmarks/deploy.py          # the default run and ResNet-20, ~10 min on 2 cores
    PYTHONPATH=src python benchmarks/deploy.py --quick  # a tiny digits run trained here, under a minute

Each run folder (``benchmarks/results/default_run``, ``benchmarks/results/compress_resnet20/
cost_power_0.5``) is copied to a temporary folder and ``zigprune export --int8 --share-bits 4`` is
applied to the copy (``zigprune.runs.export_job``), then ``--share-bits 6``: int8 tries four
schemes, keeps the fastest that holds accuracy within 0.5 pt, and times dense fp32, slim fp32 and
slim int8 alternately, one thread, at batch 1 and 64; the dense model is the run's architecture
with fresh weights (speed does not depend on them; its accuracy is the one the run recorded).
Weight sharing is scored before and after a short centroid fine-tune (at most 300 batches of the
run's training data). Writes ``deploy.md`` and ``deploy.json`` to ``--out`` (default
``benchmarks/results/deploy``; ``--quick`` defaults to ``runs/bench-quick/deploy``).

Goals: on the default run slim int8 >= 4x dense fp32 at batch 64 with <= 0.5 pt accuracy loss; on
ResNet-20 slim int8 >= 3x dense fp32, and the recommended file never slower than slim fp32; 4-bit
sharing <= 1 pt loss after the fine-tune with a file >= 6x smaller than the slim fp32 safetensors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zigprune.cli import main as cli
from zigprune.runs.export_job import deploy_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, goal_line, machine_info
from deploy_pt2e import pt2e_entry, pt2e_rows

DEFAULT_OUT = REPO / "benchmarks" / "results" / "deploy"
QUICK_OUT = REPO / "runs" / "bench-quick" / "deploy"
RUNS = {
    "default run (digits CNN)": REPO / "benchmarks" / "results" / "default_run",
    "ResNet-20 / Fashion-MNIST": REPO / "benchmarks" / "results" / "compress_resnet20" / "cost_power_0.5",
}
QUICK = ["compress", "--subset", "400", "--epochs", "2", "--no-baseline", "--no-latency", "--no-progress"]


def measure(name: str, source: Path, folder: Path, bits: list[int], seconds: float) -> dict[str, Any]:
    """Int8 and the first sharing width on a copy of the run, then each further width."""
    run = folder / name.split(" ")[0]
    shutil.copytree(source, run)
    for stale in ("model.onnx", "model.int8.onnx"):
        (run / stale).unlink(missing_ok=True)
    start = time.perf_counter()
    found = deploy_run(run, int8=True, share_bits=bits[0], latency_seconds=seconds, progress=False, log=_log)
    sharing = {bits[0]: found["sharing"]}
    for more in bits[1:]:
        sharing[more] = deploy_run(run, int8=False, share_bits=more, progress=False, log=_log)["sharing"]
    dense = json.loads((source / "metrics.json").read_text())["dense"]["accuracy"]
    where = source.relative_to(REPO) if source.is_relative_to(REPO) else source
    return {
        "run": name,
        "source": str(where),
        "dense_accuracy": dense,
        "int8": found["int8"],
        "sharing": sharing,
        "seconds": time.perf_counter() - start,
    }


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def int8_rows(entry: dict[str, Any]) -> list[str]:
    rows = []
    for a in entry["int8"]["artefacts"]:
        acc = a["quality"]["accuracy"] if a["name"] != "dense fp32" else entry["dense_accuracy"]
        lat = {str(x["batch"]): x["median_ms"] for x in a["latency"]}
        shown = "n/a" if acc is None else f"{acc:.2%}"
        rows.append(
            f"| {entry['run']} | {a['name']} | {shown} | {a['bytes'] / 1024:,.0f} KiB | {lat['1']:.3f} | "
            f"{lat['64']:.2f} | {a['speedup']['1']:.2f}x | {a['speedup']['64']:.2f}x |"
        )
    return rows


def sharing_rows(entry: dict[str, Any]) -> list[str]:
    rows = []
    for bits, s in entry["sharing"].items():
        fp32, shared, huffman = (
            n / 1024 for n in (s["fp32_file_bytes"], s["file_bytes"], s["sizes"]["huffman_bytes"])
        )
        slim, shared_acc, tuned = (f"{s[k]['accuracy']:.2%}" for k in ("slim", "shared", "finetuned"))
        rows.append(
            f"| {entry['run']} | {bits} | {slim} | {shared_acc} | {tuned} ({s['steps']} steps) | "
            f"{fp32:,.0f} KiB | {shared:,.0f} KiB ({fp32 / shared:.1f}x) | {huffman:,.0f} KiB |"
        )
    return rows


def goals(entries: list[dict[str, Any]], quick: bool) -> list[str]:
    """Each goal with the figure that decides it; met or **not met**."""
    lines = []
    wanted = {0: 4.0, 1: 3.0}
    for i, entry in enumerate(entries):
        int8 = entry["int8"]
        fp32, q8 = int8["artefacts"][1], int8["artefacts"][2]
        speed, loss = q8["speedup"]["64"], (fp32["quality"]["accuracy"] - q8["quality"]["accuracy"]) * 100
        goal = wanted.get(i, 3.0) if not quick else 1.0
        text = f"{entry['run']}: slim int8 {speed:.2f}x dense fp32 at batch 64 (goal >= {goal:g}x)"
        lines.append(goal_line(text, speed >= goal))
        if i == 0:
            lines.append(goal_line(f"{entry['run']}: int8 loses {loss:.2f} pt (goal <= 0.5 pt)", loss <= 0.5))
        chosen = next(a for a in int8["artefacts"] if a["file"] == int8["recommended"])
        slower = chosen["latency"][-1]["median_ms"] > fp32["latency"][-1]["median_ms"]
        text = (
            f"{entry['run']}: recommended `{int8['recommended']}` ({int8['verdict']}), never slower than fp32"
        )
        lines.append(goal_line(text, not slower))
        lines += pt2e_goal_lines(entry, goal)
        s = entry["sharing"][min(entry["sharing"])]
        lost = (s["slim"]["accuracy"] - s["finetuned"]["accuracy"]) * 100
        ratio = s["fp32_file_bytes"] / s["file_bytes"]
        text = (
            f"{entry['run']}: {min(entry['sharing'])}-bit sharing loses {lost:.2f} pt after the fine-tune, "
            f"file {ratio:.1f}x smaller (goal <= 1 pt, >= 6x)"
        )
        lines.append(goal_line(text, lost <= 1 and ratio >= 6))
    return lines


def pt2e_goal_lines(entry: dict[str, Any], goal: float) -> list[str]:
    """The same speed goal for the PT2E int8 model, against both dense fp32 baselines timed with it."""
    rows = {r["model"]: r for r in entry.get("pt2e", {}).get("rows", [])}
    if "slim int8 PT2E" not in rows:
        return []
    int8 = rows["slim int8 PT2E"]["ms"]["64"]
    ratios = {k: rows[k]["ms"]["64"] / int8 for k in ("dense fp32 eager", "dense fp32 Inductor") if k in rows}
    loss = (rows["slim fp32 eager"]["accuracy"] - rows["slim int8 PT2E"]["accuracy"]) * 100
    against = ", ".join(f"{r:.2f}x {k}" for k, r in ratios.items())
    text = f"{entry['run']}: slim int8 PT2E {against} at batch 64, losing {loss:.2f} pt (goal >= {goal:g}x)"
    return [goal_line(text, min(ratios.values()) >= goal)]


def schemes_line(entry: dict[str, Any]) -> str:
    """The verdict and the time of every int8 scheme tried, at batch 64."""
    tried = "; ".join(f"{t['scheme']} {t['ms']:.2f} ms" for t in entry["int8"]["tried"])
    fp32 = entry["int8"]["tried"][0]["fp32_ms"]
    return f"- {entry['run']}: {entry['int8']['verdict']} (schemes tried: {tried}; slim fp32 {fp32:.2f} ms)"


def pt2e_section(entries: list[dict[str, Any]]) -> list[str]:
    """The PyTorch-side table (torchao PT2E int8, Inductor), when it was measured."""
    measured = [e for e in entries if "pt2e" in e]
    if not measured:
        return []
    return [
        "## Int8 in PyTorch (torchao PT2E, Inductor with freezing; one thread; speedup vs dense fp32 eager)",
        "",
        "| run | model | accuracy | first calls s | batch 1 ms | batch 64 ms | speedup b1 | speedup b64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *[row for e in measured for row in pt2e_rows(e["pt2e"], e["dense_accuracy"])],
        "",
        "*first calls s*: the first call at batch 1 and at batch 64, where Inductor compiles (static "
        "shapes); the slim fp32 model compiled computes what it does eager.",
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    entries = report["runs"]
    head = "| run | model | accuracy | file | batch 1 ms | batch 64 ms | speedup b1 | speedup b64 |"
    share_head = "| run | bits | slim fp32 | shared | + fine-tune | fp32 file | shared file | Huffman |"
    return "\n".join(
        [
            "# Deploy: int8 and weight sharing, side by side",
            "",
            f"Command (from the repository root): `{report['command']}`",
            "",
            f"Machine: {report['machine']['summary']}. Total wall time {report['seconds']:.0f} s.",
            "",
            "## Int8 (ONNX Runtime, one thread; speedup over dense fp32)",
            "",
            head,
            "|---|---|---:|---:|---:|---:|---:|---:|",
            *[row for e in entries for row in int8_rows(e)],
            "",
            *[schemes_line(e) for e in entries],
            "",
            *pt2e_section(entries),
            "## Weight sharing (conv and linear weights; test accuracy)",
            "",
            share_head,
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *[row for e in entries for row in sharing_rows(e)],
            "",
            "## Goals",
            "",
            *goals(entries, report["settings"]["quick"]),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny digits run trained here: a smoke run")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 6], help="sharing widths (default 4 6)")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="per model and batch (1; 0.05 quick)"
    )
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--no-pt2e", action="store_true", help="skip the torchao PT2E / Inductor table")
    args = parser.parse_args(argv)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    seconds = args.latency_seconds or (0.05 if args.quick else 1.0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zigprune-deploy-") as temp:
        folder = Path(temp)
        runs = dict(RUNS)
        if args.quick:
            quick = folder / "quick-source"
            if cli([*QUICK, "--out", str(quick)]) != 0:
                return 1
            runs = {"quick digits run": quick}
        entries = [measure(name, source, folder, args.bits, seconds) for name, source in runs.items()]
        for entry, (name, source) in zip(entries, runs.items()):
            if not args.no_pt2e:
                _log(f"{name}: PT2E int8 and Inductor (compiles each model at batch 1 and 64)")
                entry["pt2e"] = pt2e_entry(name, source, seconds, quick=args.quick)
    report = {
        "command": command_line(__file__, sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "bits": args.bits,
            "latency_seconds": seconds,
            "pt2e": not args.no_pt2e,
        },
        "runs": entries,
        "seconds": time.perf_counter() - start,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown(report)
    (out / "deploy.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
