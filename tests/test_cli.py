"""The ``zigprune`` command line: every subcommand on tiny inputs, help texts, and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from cli_errors import error_of

import zigprune as zp
from zigprune.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
TINY = [
    "--subset",
    "200",
    "--epochs",
    "1",
    "--batch-size",
    "50",
    "--no-baseline",
    "--no-latency",
    "--no-onnx",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["compress", *TINY, "--target", "macs=2x", "--out", str(out), "--no-progress"]) == 0
    return out


def test_compress_prints_the_before_after_table(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["command"].startswith("zigprune compress --subset 200")
    assert metrics["config"]["target"] == "macs=2x" and metrics["reduction"]["macs"] > 1.5
    main(["report", str(run_dir)])
    out = capsys.readouterr().out
    assert (
        "| params" in out and "| MACs" in out and "fewer" in out and f"wrote {run_dir / 'report.md'}" in out
    )


def test_eval(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    accuracy = json.loads((run_dir / "metrics.json").read_text())["slim"]["accuracy"]
    assert f"accuracy {accuracy:.2%}" in out and "test samples of digits" in out


def test_export(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "slim.onnx"
    assert main(["export", str(run_dir), "--output", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    x = torch.randn(5, 1, 8, 8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        assert torch.allclose(got, zp.load(run_dir)(x), atol=1e-4)


def test_report_rerenders(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    for name in ("report.md", "training.png"):
        (run_dir / name).unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Kept widths" in (run_dir / "report.md").read_text()


def test_analyze_takes_any_model_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = (
        "from torch import nn\n\n"
        "def build(width=8):\n"
        "    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))\n"
    )
    (tmp_path / "net.py").write_text(source)
    spec = f"{tmp_path / 'net.py'}:build"
    argv = ["analyze", "--model", spec, "--model-kwargs", '{"width": 6}', "--input-shape", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6 prunable groups" in out and "x fewer" in out
    err = error_of(capsys, ["analyze", "--model", spec], 2)
    assert "is a factory: pass --input-shape" in err


def test_errors_are_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "valid names: " in error_of(capsys, ["compress", "--model", "nope"], 2)
    assert "valid names: cifar10, digits" in error_of(capsys, ["compress", "--data", "nope"], 2)
    assert "outside (0, 1)" in error_of(
        capsys, ["compress", "--target", "1.5", "--out", str(tmp_path / "t")], 2
    )
    assert "above 1x" in error_of(
        capsys, ["compress", "--target", "macs=0.5x", "--out", str(tmp_path / "t")], 2
    )
    assert not (tmp_path / "t").exists()
    assert "pass --force" in error_of(capsys, ["compress", *TINY, "--out", str(run_dir)], 2)
    assert "nothing to resume" in error_of(capsys, ["compress", "--out", str(run_dir), "--resume"], 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "plan.json").write_text("{")
    assert "is corrupt" in error_of(capsys, ["eval", str(bad), "--data", "digits"], 1)
    assert "not a finished zigprune run" in error_of(capsys, ["report", str(bad)], 1)
    assert "not a folder" in error_of(capsys, ["export", str(tmp_path / "missing")], 1)


def test_resume_refuses_changed_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": "digits_cnn", "lr": 0.05}))
    (out / "checkpoint.safetensors").write_bytes(b"")
    err = error_of(capsys, ["compress", "--out", str(out), "--resume", "--lr", "0.1"], 2)
    assert "drop --lr (saved: 0.05)" in err


@pytest.mark.parametrize("command", ["compress", "analyze", "eval", "export", "report"])
def test_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zigprune {command}")
    assert {"compress": "--target", "analyze": "--model", "eval": "run_dir", "export": "--output"}.get(
        command, "report.md"
    ) in out


def test_top_level_help_lists_subcommands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("compress", "analyze", "eval", "export", "report"))


def test_docs_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})
    assert (tmp_path / "runs" / "doc-example" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "doc-loop.safetensors").is_file()
