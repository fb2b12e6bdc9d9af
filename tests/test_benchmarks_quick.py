"""Smoke tests: the benchmarks' --quick paths run end to end and write their outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "analyze_speed.py"


def run_script(script: Path, *args: str) -> None:
    """Run a benchmark script from the repository root with this checkout's sources; it must succeed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_analyze_speed_quick(tmp_path: Path) -> None:
    pytest.importorskip("torch_pruning")
    pytest.importorskip("transformers")
    run_script(SCRIPT, "--quick", "--no-progress", "--out", str(tmp_path))

    report = json.loads((tmp_path / "analyze_speed.json").read_text())
    assert report["settings"]["quick"] is True
    for key in ("platform", "cpu_count", "torch", "transformers", "torch_pruning"):
        assert report["machine"][key], key
    assert report["timestamp"] and "--quick" in report["command"]

    entries = report["models"]
    assert [e["name"].split(" ")[0] for e in entries] == ["BERT-tiny", "BERT-tiny", "ResNet-20"]
    for entry in entries:
        assert "error" not in entry, entry.get("error")
        assert entry["params"] > 0
        for key in (
            "analyze_check_off",
            "analyze_check_on",
            "tp_build_dependency",
            "torch_export",
            "construct",
        ):
            assert entry[key]["median_s"] > 0, (entry["name"], key)
            assert all(t > 0 for t in entry[key]["times_s"])
        assert entry["num_groups"] > 0
        assert entry["ratio_zigprune_tp"] > 0 and entry["ratio_export_tp"] > 0
        assert entry["slim"]["params"] < entry["params"]

    rows = report["depth_sweep"]["rows"]
    assert [r["layers"] for r in rows] == [1, 2, 4]
    for row in rows:
        assert row["zigprune_s"] > 0 and row["tp_s"] > 0 and row["num_groups_check_off"] > 0

    scale = report["scale"]
    assert [r["hidden"] for r in scale["width_sweep"]] == [32, 64, 128]
    assert all(r["ratio"] > 0 and r["num_groups"] > 0 for r in scale["width_sweep"])
    meta = scale["meta"]
    assert meta["slim_params"] == meta["slim_params_predicted"] < meta["params"]
    assert meta["num_groups"] > 0 and meta["peak_rss_mib"] > 0
    load = scale["end_to_end"]["load"]
    assert load["finite"] and 0 < load["slim_params"] < scale["end_to_end"]["save"]["params"]
    assert load["peak_anon_mib"] >= load["anon_mib_before_plan"] > 0

    md = (tmp_path / "analyze_speed.md").read_text()
    assert "| model |" in md and "| layers |" in md and "benchmarks/analyze_speed.py --quick" in md
    assert "| hidden |" in md and "analyze / export" in md and "added by plan + load / checkpoint" in md
    assert "### Goals" in md
    png = tmp_path / "analyze_speed.png"
    assert png.stat().st_size > 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_post_training_fuzz_quick(tmp_path: Path) -> None:
    pytest.importorskip("hypothesis")
    run_script(REPO / "benchmarks" / "post_training_fuzz.py", "--quick", "--out", str(tmp_path))
    report = json.loads((tmp_path / "post_training_fuzz.json").read_text())
    nets = report["fuzz"]["nets"]
    assert len(nets) == 3 and report["issue"] is None and "--quick" in report["command"]
    for net in nets:
        assert [(r["factor"], r["method"]) for r in net["rows"]] == [
            (1.5, m) for m in ("obs", "flap", "wanda", "magnitude")
        ]
        assert all(r["macs"] <= net["macs"] / 1.5 * 1.01 for r in net["rows"] if "macs" in r)
    cell = report["summary"]["1.5x"]["obs"]
    assert len(cell["losses"]) == 3 and cell["at_chance"] == 0
    md = (tmp_path / "post_training_fuzz.md").read_text()
    assert "| 1.5x | obs | 3 |" in md and "## Goals" in md
    assert (tmp_path / "post_training_fuzz.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slim_speed_quick_times_a_published_run(tmp_path: Path) -> None:
    run = REPO / "benchmarks" / "results" / "compress_resnet20" / "cost_power_0"
    script = REPO / "benchmarks" / "slim_speed.py"
    run_script(script, str(run), "--quick", "--layers", "--bar", "0.01", "--out", str(tmp_path))
    report = json.loads((tmp_path / "slim_speed.json").read_text())
    (row,) = report["runs"]
    assert abs(row["macs_reduction"] - 2.50) < 0.01
    (timed,) = row["rounds"]
    assert timed["dense_ms"] > 0 and timed["slim_ms"] > 0
    assert timed["ratio"] == pytest.approx(timed["dense_ms"] / timed["slim_ms"] / row["macs_reduction"])
    assert row["median_ratio"] == row["p10_ratio"] == row["p90_ratio"] == timed["ratio"]
    assert row["share_at_bar"] == (1.0 if timed["ratio"] >= 0.01 else 0.0)

    (layers,) = report["layers"]
    dense, slim = layers["layers"]["dense"], layers["layers"]["slim"]
    assert dense["layer1.0.conv1"]["weight"] == [16, 16, 3, 3]
    assert dense["layer1.0.conv1"]["macs"] == 64 * 28 * 28 * 16 * 16 * 9
    assert all(layer["ms"] > 0 for layer in [*dense.values(), *slim.values()])
    totals = layers["totals"]
    assert totals["dense"]["macs"] / totals["slim"]["macs"] == pytest.approx(row["macs_reduction"], rel=0.01)

    md = (tmp_path / "slim_speed.md").read_text()
    assert "--quick" in report["command"] and "| run |" in md and "| layer1.0.conv1 | 16→16 |" in md
    assert (tmp_path / "slim_speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slim_speed_summary_counts_rounds_at_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from slim_speed import summary

    result = summary([0.7, 0.9, 0.86, 0.8, 1.0], bar=0.85)
    assert result["median_ratio"] == 0.86 and result["share_at_bar"] == 0.6
    assert 0.7 <= result["p10_ratio"] < result["median_ratio"] < result["p90_ratio"] <= 1.0


def test_timm_coverage_quick_runs_or_says_what_it_needs(tmp_path: Path) -> None:
    """timm is optional (it needs a torchvision that imports beside this torch): else exit 2 and why."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    script = REPO / "benchmarks" / "timm_coverage.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode == 2:
        assert "timm_coverage needs timm" in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        rows = json.loads((tmp_path / "timm_coverage.json").read_text())["models"]
        assert [r["model"] for r in rows] == ["vit_tiny_patch16_224", "resnetblur18"]


def test_post_training_quick(tmp_path: Path) -> None:
    """Every method at 1.5x on the digits CNN (and a tiny BERT when transformers is there): targets met."""
    run_script(REPO / "benchmarks" / "post_training.py", "--quick", "--no-progress", "--out", str(tmp_path))
    report = json.loads((tmp_path / "post_training.json").read_text())
    assert report["settings"]["quick"] is True and "--quick" in report["command"]
    image = report["image"]
    assert [(r["target"], r["method"]) for r in image["rows"]] == [
        ("1.5x", m) for m in ("obs", "flap", "wanda", "magnitude")
    ]
    dense = image["dense"]
    for row in image["rows"]:
        assert row["macs"] <= dense["macs"] / 1.5 and 0 <= row["accuracy"] <= 1
    obs = image["rows"][0]
    assert obs["accuracy"] >= dense["accuracy"] - 0.05
    assert len(report["goals"]) >= 2 and (tmp_path / "post_training.md").read_text().startswith(
        "# Post-training"
    )
    if report["text"] is not None:
        assert all(-1 <= r["cosine"] <= 1 for r in report["text"]["rows"])
        trained = {r["method"] for r in report["text"]["rows"]}
        assert {"compress --distill (HESSO)", "obs + distill epochs"} <= trained


def test_deploy_quick(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    run_script(REPO / "benchmarks" / "deploy.py", "--quick", "--bits", "4", "--out", str(tmp_path))
    report = json.loads((tmp_path / "deploy.json").read_text())
    (entry,) = report["runs"]
    assert report["settings"]["quick"] is True
    assert [a["name"] for a in entry["int8"]["artefacts"]] == ["dense fp32", "slim fp32", "slim int8"]
    assert set(entry["sharing"]) == {"4"} and entry["sharing"]["4"]["file_bytes"] > 0
    text = (tmp_path / "deploy.md").read_text()
    assert "## Goals" in text and "slim int8" in text
    if importlib.util.find_spec("torchao"):
        rows = entry["pt2e"]["rows"]
        assert [r["model"] for r in rows][-1] == "slim int8 PT2E" and "slim int8 PT2E" in text
        assert all(r["ms"]["64"] > 0 for r in rows) and rows[-1]["accuracy"] is not None


def test_search_quick(tmp_path: Path) -> None:
    """benchmarks/search.py --quick: every strategy at a MACs budget, three at a latency budget and on
    the text encoder, each within its MACs budget and timed against the dense model on the latency
    one, a table and goals."""
    run_script(REPO / "benchmarks" / "search.py", "--quick", "--no-progress", "--out", str(tmp_path))
    report = json.loads((tmp_path / "search.json").read_text())
    strategies = ["dp", "global", "uniform", "evolution", "bo", "amc", "galen", "gnn-rl"]
    timed = ["dp", "global", "uniform"]
    assert [r["strategy"] for r in report["rows"]] == strategies + timed and report["settings"]["quick"]
    macs, latency = report["rows"][: len(strategies)], report["rows"][len(strategies) :]
    assert [r["evaluations"] for r in macs][:3] == [0, 0, 0] and all(r["evaluations"] > 0 for r in macs[3:])
    assert all(r["macs_share"] <= 0.5 and not r["latency"] for r in macs)
    assert all(r["latency"]["ms"] > 0 and r["budget"] == "latency=0.5@torch" for r in latency)
    assert all(r["loss"] >= 0 for r in report["rows"])
    assert "Smoke run" in (tmp_path / "search.md").read_text() and report["goals"]
    if report["text"] is not None:  # transformers installed: the encoder's rows too
        assert [r["strategy"] for r in report["text"]["rows"]] == timed
        assert all(0 < r["cosine"] <= 1 and r["macs_share"] <= 0.667 for r in report["text"]["rows"])


def test_search_transfer_quick(tmp_path: Path) -> None:
    """benchmarks/search_transfer.py --quick: gnn-rl trained on the digits CNN, its agent applied to
    the digits MLP without training, beside dp, global and uniform on both, within the budget."""
    script = REPO / "benchmarks" / "search_transfer.py"
    run_script(script, "--quick", "--no-progress", "--out", str(tmp_path))
    report = json.loads((tmp_path / "search_transfer.json").read_text())
    rows = report["rows"]
    compared = ("gnn-rl", "dp", "global", "uniform")
    assert [(r["model"], r["strategy"]) for r in rows] == [
        (m, s) for m in ("digits_cnn", "mlp") for s in compared
    ]
    assert rows[0]["evaluations"] > 0 and rows[4]["evaluations"] == 0, "trained there, applied here"
    assert rows[4]["agent"] == "trained on digits_cnn" and all(r["macs_share"] <= 0.5 for r in rows)
    text = (tmp_path / "search_transfer.md").read_text()
    assert "Smoke run" in text and "trained on digits_cnn, applied without training" in text
