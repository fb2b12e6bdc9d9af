"""A run's deploy sections (int8 files, weight sharing) as Markdown, for the report and the CLI."""

from __future__ import annotations

from typing import Any


def int8_table(result: dict[str, Any]) -> str:
    """The int8 section of a run's metrics as a markdown table, with the schemes tried and the verdict."""
    key = result["key"]
    batches = [str(x["batch"]) for x in result["artefacts"][0]["latency"]]
    head = f"| model | {key} | file | " + " | ".join(f"batch {b} ms (speedup)" for b in batches) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(batches)]
    for a in result["artefacts"]:
        value = a["quality"].get(key)
        shown = "n/a" if value is None else f"{value:.2%}" if key == "accuracy" else f"{value:.4f}"
        cells = [f"{x['median_ms']:.2f} ({a['speedup'][str(x['batch'])]:.2f}x)" for x in a["latency"]]
        lines.append(f"| {a['name']} | {shown} | {a['bytes'] / 1024:,.0f} KiB | " + " | ".join(cells) + " |")
    tried = "; ".join(
        f"{t['scheme']}: {t['ms']:.2f} ms{'' if t['kept_quality'] else ' (lost quality)'}"
        for t in result["tried"]
    )
    fp32_ms = result["tried"][0]["fp32_ms"] if result["tried"] else float("nan")
    return "\n".join(
        [
            *lines,
            "",
            f"Schemes tried at batch {batches[-1]} (slim fp32 {fp32_ms:.2f} ms): {tried}.",
            f"**{result['verdict']}**; recommended file: `{result['recommended']}`.",
        ]
    )


def sharing_table(section: dict[str, Any]) -> str:
    """The weight-sharing section as a short markdown table."""
    key, sizes = section["key"], section["sizes"]
    fmt = (lambda v: f"{v:.2%}") if key == "accuracy" else (lambda v: f"{v:.4f}")
    fp32 = section["fp32_file_bytes"]
    ratio = f" ({fp32 / section['file_bytes']:.1f}x smaller)" if fp32 else ""
    return "\n".join(
        [
            f"| weights | {key} | conv/linear weights | file |",
            "|---|---:|---:|---:|",
            f"| slim fp32 | {fmt(section['slim'][key])} | {sizes['fp32_bytes'] / 1024:,.0f} KiB | "
            f"{(fp32 or 0) / 1024:,.0f} KiB |",
            f"| {section['bits']}-bit shared | {fmt(section['shared'][key])} | "
            f"{sizes['packed_bytes'] / 1024:,.0f} KiB | |",
            f"| + centroid fine-tune ({section['steps']} steps) | {fmt(section['finetuned'][key])} | "
            f"{sizes['packed_bytes'] / 1024:,.0f} KiB (Huffman: {sizes['huffman_bytes'] / 1024:,.0f} KiB) | "
            f"{section['file_bytes'] / 1024:,.0f} KiB{ratio} |",
        ]
    )


def deploy_lines(metrics: dict[str, Any]) -> list[str]:
    """The ``int8`` and ``sharing`` sections of a run's metrics as markdown (empty when it has neither)."""
    lines: list[str] = []
    if metrics.get("int8"):
        lines += ["## Int8 (ONNX Runtime)", "", int8_table(metrics["int8"]), ""]
    if metrics.get("sharing"):
        bits = metrics["sharing"]["bits"]
        lines += [f"## Weight sharing, {bits} bits", "", sharing_table(metrics["sharing"]), ""]
    return lines
