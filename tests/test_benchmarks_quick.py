"""Smoke test: ``benchmarks/analyze_speed.py --quick`` runs end to end and writes its three outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "analyze_speed.py"


def test_analyze_speed_quick(tmp_path: Path) -> None:
    pytest.importorskip("torch_pruning")
    pytest.importorskip("transformers")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-progress", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

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
        for key in ("analyze_check_off", "analyze_check_on", "tp_build_dependency", "construct"):
            assert entry[key]["median_s"] > 0, (entry["name"], key)
            assert all(t > 0 for t in entry[key]["times_s"])
        assert entry["num_groups"] > 0
        assert entry["ratio_zigprune_tp"] > 0
        assert entry["slim"]["params"] < entry["params"]

    rows = report["depth_sweep"]["rows"]
    assert [r["layers"] for r in rows] == [1, 2, 4]
    for row in rows:
        assert row["zigprune_s"] > 0 and row["tp_s"] > 0 and row["num_groups_check_off"] > 0

    md = (tmp_path / "analyze_speed.md").read_text()
    assert "| model |" in md and "| layers |" in md and "benchmarks/analyze_speed.py --quick" in md
    png = tmp_path / "analyze_speed.png"
    assert png.stat().st_size > 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
