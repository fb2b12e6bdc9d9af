"""The scale part of B3-analysis (imported by ``analyze_speed.py``): models larger than memory.

* **Llama-2-7B on meta**: the real config (32 layers, hidden 4096, MLP 11008, vocab 32000; 6.7B
  parameters, 27 GB in fp32) built under ``torch.device("meta")``; ``torch.export`` alone next to
  ``zp.analyze(check=False)`` in the same process, peak RSS of that process, groups, and the slim
  parameter count after zeroing every other group (``space.construct(check=False)`` on meta).
  Torch-Pruning's ``DependencyGraph`` on the same meta model is the anchor (it may fail: how is kept).
* **Width sweep**: BERT with 4 layers at hidden 256 … 1024 (parameters grow ~10x, the graph not at
  all): analyze / export alone should stay flat.
* **End to end on a model that fits**: a random ~1.1B-parameter decoder (TinyLlama's shape) saved as
  a sharded safetensors folder; then, in a fresh process, the plan on meta (magnitude norms read from
  the shards) and ``zp.load_pruned``; that process's peak RSS against the checkpoint's size.

Each heavy case runs in its own child process (``python analyze_scale.py --child NAME``) so its
peak RSS (``VmHWM``) is its own, imports included.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}  # fmt: skip
TINYLLAMA = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
             "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000}  # fmt: skip
QUICK_DECODER = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128}  # fmt: skip
SEQ = 16


def _llama(shape: dict[str, int]) -> Any:
    import transformers

    return transformers.LlamaConfig(**shape, use_cache=False, tie_word_embeddings=False)


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# -- children: each prints one JSON object ---------------------------------------------------------------


def child_meta(shape: dict[str, int]) -> dict[str, Any]:
    """A decoder on meta: export alone, analyze, zero half, construct on meta, Torch-Pruning."""
    import transformers
    from common import high_water_mib

    import zigprune as zp
    from zigprune.core import trace

    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(_llama(shape)).eval()
    inputs = {"input_ids": torch.zeros(1, SEQ, dtype=torch.long, device="meta")}
    traced = trace.as_inputs(inputs, model)
    trace.export(model, traced)  # untimed: first-call costs of torch.export
    export_s = min(_timed(lambda: trace.export(model, traced))[0] for _ in range(2))
    times, space = zip(*(_timed(lambda: zp.analyze(model, inputs, check=False)) for _ in range(2)))
    space = space[-1]
    full = zp.count(model, inputs)
    space.zero_(range(0, space.num_groups, 2))
    construct_s, slim = _timed(lambda: space.construct(check=False))
    res = {
        "params": full["params"], "fp32_gb": full["params"] * 4 / 1e9, "export_s": export_s,
        "analyze_s": min(times), "ratio": min(times) / export_s, "num_groups": space.num_groups,
        "graph_nodes": len(trace.export(model, traced).graph.nodes), "construct_s": construct_s,
        "slim_params": sum(p.numel() for p in slim.parameters()),
        "slim_params_predicted": space.params(space.zero_groups()), "peak_rss_mib": high_water_mib(),
    }  # fmt: skip
    try:
        import torch_pruning as tp

        tp_s, _ = _timed(lambda: tp.DependencyGraph().build_dependency(model, example_inputs=inputs))
        res["tp"] = {"seconds": tp_s}
    except Exception as err:  # the anchor may not handle meta models: record how it fails
        res["tp"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}
    return res


def child_save(shape: dict[str, int], folder: str) -> dict[str, Any]:
    """Build a random decoder in memory and save it as a sharded safetensors folder."""
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_llama(shape)).eval()
    save_s, _ = _timed(lambda: model.save_pretrained(folder, max_shard_size="1GB"))
    files = list(Path(folder).glob("*.safetensors"))
    return {
        "params": sum(p.numel() for p in model.parameters()), "save_s": save_s, "shards": len(files),
        "checkpoint_mib": sum(f.stat().st_size for f in files) / 2**20,
    }  # fmt: skip


def child_load(shape: dict[str, int], folder: str) -> dict[str, Any]:
    """Plan on meta from the shards (magnitude, half the parameters), then load only the slim model."""
    import transformers
    from accelerate import init_empty_weights
    from common import MemoryPeak, high_water_mib

    import zigprune as zp

    memory = MemoryPeak(interval=0.02)
    started = time.perf_counter()
    with init_empty_weights():
        model = transformers.LlamaForCausalLM(_llama(shape)).eval()
    inputs = {"input_ids": torch.zeros(1, SEQ, dtype=torch.long, device="meta")}
    time.sleep(0.05)
    base = memory.peak_anon / 2**20
    analyze_s, space = _timed(lambda: zp.analyze(model, inputs, check=False))
    weights = zp.Checkpoint(folder)
    prune_s, removed = _timed(
        lambda: zp.prune(space, None, 0.5, by="params", method="magnitude", weights=weights, progress=False)
    )
    rss_before_load, anon_before_load = high_water_mib(), memory.peak_anon / 2**20
    load_s, slim = _timed(lambda: zp.load_pruned(space, weights))
    with torch.no_grad():
        logits = slim(input_ids=torch.zeros(1, SEQ, dtype=torch.long)).logits
    return {
        "analyze_s": analyze_s, "prune_s": prune_s, "load_s": load_s,
        "total_s": time.perf_counter() - started, "groups_removed": len(removed),
        "slim_params": sum(p.numel() for p in slim.parameters()),
        "slim_mib": sum(p.numel() * p.element_size() for p in slim.parameters()) / 2**20,
        "finite": bool(torch.isfinite(logits).all()), "peak_rss_mib_before_load": rss_before_load,
        "peak_rss_mib": high_water_mib(), "peak_anon_mib_before_load": anon_before_load,
        "peak_anon_mib": memory.stop().peak_anon / 2**20, "anon_mib_before_plan": base,
    }  # fmt: skip


CHILDREN = {"meta": child_meta, "save": child_save, "load": child_load}


def run_child(name: str, *args: str, fresh: bool = True) -> dict[str, Any]:
    """Run one child in a fresh interpreter; its last stdout line is its JSON result. Not ``fresh``
    (a --quick smoke run): in this process, whose memory figures then include the parent's."""
    if not fresh:
        return CHILDREN[name](json.loads(args[0]), *args[1:])
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- cases run from analyze_speed ------------------------------------------------------------------------


def meta_case(quick: bool) -> dict[str, Any]:
    shape = QUICK_DECODER if quick else LLAMA_7B
    return {"shape": shape, **run_child("meta", json.dumps(shape), fresh=not quick)}


def end_to_end(quick: bool) -> dict[str, Any]:
    shape = QUICK_DECODER if quick else TINYLLAMA
    with tempfile.TemporaryDirectory(prefix="zigprune-scale-") as folder:
        saved = run_child("save", json.dumps(shape), folder, fresh=not quick)
        if "error" in saved:
            return {"shape": shape, "save": saved}
        loaded = run_child("load", json.dumps(shape), folder, fresh=not quick)
        return {"shape": shape, "save": saved, "load": loaded}


def width_sweep(quick: bool, build: Any, paired: Any) -> list[dict[str, Any]]:
    """BERT at fixed depth over widths: export alone and analyze (check off) timed in turn, 5 rounds (1
    quick); the ratio is the median of the rounds' ratios."""
    import zigprune as zp
    from zigprune.core import trace

    widths = (32, 64, 128) if quick else (256, 512, 768, 1024)
    rows = []
    for hidden in widths:
        model, inputs = build(hidden)
        traced = trace.as_inputs(inputs, model)
        (export_times, analyze_times), (program, space) = paired(
            [
                lambda m=model, t=traced: trace.export(m, t),
                lambda m=model, i=inputs: zp.analyze(m, i, check=False),
            ],
            1 if quick else 5,
        )
        export_s, analyze_s = statistics.median(export_times), statistics.median(analyze_times)
        ratio = statistics.median(a / e for a, e in zip(analyze_times, export_times))
        rows.append({
            "hidden": hidden, "params": sum(p.numel() for p in model.parameters()),
            "graph_nodes": len(program.graph.nodes), "export_s": export_s, "analyze_s": analyze_s,
            "ratio": ratio, "num_groups": space.num_groups,
        })  # fmt: skip
    return rows


# -- tables ----------------------------------------------------------------------------------------------


def meta_table(res: dict[str, Any]) -> str:
    if "error" in res:
        return f"meta case failed: {res['error']}"
    tp = res["tp"].get("error") or f"{res['tp']['seconds']:.1f} s"
    return "\n".join([
        "| params (fp32 size) | graph nodes | torch.export alone s | analyze s | analyze / export | peak RSS "
        "MiB | groups | slim params, every other group zeroed | construct on meta s | Torch-Pruning |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {res['params'] / 1e9:.2f}B ({res['fp32_gb']:.1f} GB) | {res['graph_nodes']} "
        f"| {res['export_s']:.2f} "
        f"| {res['analyze_s']:.2f} | {res['ratio']:.2f} | {res['peak_rss_mib']:.0f} | {res['num_groups']} "
        f"| {res['slim_params'] / 1e9:.2f}B | {res['construct_s']:.2f} | {tp} |",
    ])  # fmt: skip


def width_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| hidden | params | graph nodes | torch.export alone s | analyze s | analyze / export | groups |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['hidden']} | {r['params'] / 1e6:.1f}M | {r['graph_nodes']} | {r['export_s']:.3f} "
            f"| {r['analyze_s']:.3f} | {r['ratio']:.2f} | {r['num_groups']} |"
        )
    return "\n".join(lines)


def end_to_end_table(res: dict[str, Any]) -> str:
    save, load = res["save"], res.get("load", {})
    if "error" in save or "error" in load:
        return f"end-to-end case failed: {save.get('error') or load.get('error')}"
    return "\n".join([
        "| params | checkpoint MiB (shards) | analyze on meta s | magnitude plan s | load_pruned s "
        "| slim params | slim MiB | anonymous MiB: before plan, peak before load, peak "
        "| added by plan + load / checkpoint | peak RSS MiB incl. mapped file pages (before load) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {save['params'] / 1e9:.2f}B | {save['checkpoint_mib']:.0f} ({save['shards']}) "
        f"| {load['analyze_s']:.2f} "
        f"| {load['prune_s']:.1f} | {load['load_s']:.1f} | {load['slim_params'] / 1e9:.2f}B "
        f"| {load['slim_mib']:.0f} | {load['anon_mib_before_plan']:.0f}, "
        f"{load['peak_anon_mib_before_load']:.0f}, {load['peak_anon_mib']:.0f} "
        f"| {(load['peak_anon_mib'] - load['anon_mib_before_plan']) / save['checkpoint_mib']:.2f} "
        f"| {load['peak_rss_mib']:.0f} ({load['peak_rss_mib_before_load']:.0f}) |",
    ])  # fmt: skip


def goal_lines(ratios: dict[str, float], scale: dict[str, Any]) -> list[str]:
    """Each goal of issue 16 with the figure that decides it: met or **not met**."""
    from common import goal_line  # common imports zigprune: children put src on the path first

    lines = [
        goal_line(f"{name}: analyze / export alone {r:.2f} (goal <= 1.3)", r <= 1.3)
        for name, r in ratios.items()
    ]
    widths = [r["ratio"] for r in scale["width_sweep"]]
    grown = scale["width_sweep"][-1]["params"] / scale["width_sweep"][0]["params"] if widths else 0
    if widths:
        spread = max(widths) / min(widths)
        lines.append(
            goal_line(
                f"width sweep: analyze / export from {min(widths):.2f} to {max(widths):.2f} "
                f"while parameters grow {grown:.0f}x "
                "(goal flat: within 1.3x)",
                spread <= 1.3,
            )
        )
    meta = scale["meta"]
    if "error" not in meta:
        lines.append(
            goal_line(
                f"7B on meta: analyze / export alone {meta['ratio']:.2f} (goal <= 2)", meta["ratio"] <= 2
            )
        )
        lines.append(
            goal_line(
                f"7B on meta: peak RSS {meta['peak_rss_mib'] / 1024:.2f} GiB (goal <= 4 GB)",
                meta["peak_rss_mib"] * 2**20 <= 4e9,
            )
        )
    load, save = scale["end_to_end"].get("load", {}), scale["end_to_end"].get("save", {})
    if "peak_anon_mib" in load:
        ratio = (load["peak_anon_mib"] - load["anon_mib_before_plan"]) / save["checkpoint_mib"]
        lines.append(
            goal_line(
                f"end to end: memory added by plan and load {ratio:.2f}x the checkpoint (slim model "
                f"{load['slim_mib'] / save['checkpoint_mib']:.2f}x; goal: below the full model, < 1x)",
                ratio < 1,
            )
        )
    return lines


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        args = [json.loads(sys.argv[3]), *sys.argv[4:]]
        print(json.dumps(CHILDREN[sys.argv[2]](*args)))
