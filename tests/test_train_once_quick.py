"""Smoke tests of ``benchmarks/train_once.py``: a ``--quick`` dense + HESSO run, and missing data.

The run uses the real Fashion-MNIST files when ``dataset-fashion-mnist`` is installed, else tiny
fake idx.gz files (256 train / 128 test random images) written to ``tmp_path``.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_once.py"
REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (gzip-compressed)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_fashion_mnist(folder: Path, train: int = 256, test: int = 128) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / NAMES[split][0], images)
        write_idx(folder / NAMES[split][1], labels)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def real_data_present() -> bool:
    return all((REAL_DIR / name).is_file() for pair in NAMES.values() for name in pair)


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_train_once_quick(tmp_path: Path) -> None:
    if real_data_present():
        data_dir = REAL_DIR
    else:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        fake_fashion_mnist(data_dir)
    out = tmp_path / "out"
    proc = run_script(
        "--quick", "--subset", "512", "--test-subset", "500", "--data-dir", str(data_dir), "--out", str(out),
        "--methods", "dense,hesso",
        "--step-iters", "3", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    report = json.loads((out / "train_once.json").read_text())
    assert report["settings"]["quick"] is True and report["settings"]["methods"] == ["dense", "hesso"]
    for key in ("platform", "cpu_count", "torch"):
        assert report["machine"][key], key
    rows = {row["method"]: row for row in report["summary"]}
    assert set(rows) == {"dense", "hesso"}
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["macs"] > 0 and row["params"] > 0 and row["wall_s"] > 0
        assert row["train_step_ratio"] > 0 and row["step_ratio"] > 0
    assert rows["dense"]["macs_reduction"] == pytest.approx(1.0)
    assert rows["hesso"]["macs_reduction"] >= 2.0
    assert rows["hesso"]["params"] < rows["dense"]["params"]
    assert rows["hesso"]["wall_ratio"] > 0

    md = (out / "train_once.md").read_text()
    assert "| method |" in md and "HESSO" in md and "--quick" in md
    assert (out / "train_once.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_data_dir_exits_with_hint(tmp_path: Path) -> None:
    proc = run_script("--quick", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "apt-get install dataset-fashion-mnist" in proc.stderr and "--data-dir" in proc.stderr


def test_held_out_quick(tmp_path: Path) -> None:
    data_dir = REAL_DIR if real_data_present() else tmp_path / "data"
    if not real_data_present():
        data_dir.mkdir()
        fake_fashion_mnist(data_dir)
    script = REPO / "benchmarks" / "held_out.py"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--subset", "256", "--data-dir", str(data_dir),
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    dense, hesso = json.loads((out / "held_out.json").read_text())["rows"]
    assert dense["method"] == "dense" and hesso["method"] == "hesso"
    assert dense["macs"] / hesso["macs"] >= 1.96 and hesso["params"] < dense["params"]
    assert 0 <= hesso["accuracy"] <= 100
    assert "| hesso |" in (out / "held_out.md").read_text()
