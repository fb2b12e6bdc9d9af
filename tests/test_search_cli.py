"""``zigprune search`` end to end on a dense model saved by ``compress --save-dense``: every strategy
applied and measured, the policy saved, then ``zigprune prune --policy`` building exactly its widths;
bad input refused with one line and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_errors import error_of
from conftest import FAST
from test_search_latency import fake_runtime

import zigprune as zp
from zigprune.cli import main
from zigprune.deploy.runtimes import RUNTIMES

DIGITS = ["--model", "digits_cnn", "--data", "digits"]


def assert_int8_keeps(run: Path, layers: tuple[str, ...], monkeypatch) -> None:
    """``export --int8`` on ``run`` quantizes with every scheme keeping ``layers`` in fp32."""
    pytest.importorskip("onnxruntime")
    from zigprune.runs import deploy_step
    from zigprune.runs.export_job import deploy_run

    seen = []

    def compare(*args, schemes, **kwargs):
        seen.extend(schemes)
        return SimpleNamespace(verdict="", as_dict=dict)

    monkeypatch.setattr(deploy_step, "compare_int8", compare)
    deploy_run(run, int8=True, share_bits=None, log=lambda line: None)
    assert seen and all(scheme.keep_layers == layers for scheme in seen)


def test_search_then_prune_with_the_policy(dense_run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    weights = ["--weights", str(dense_run / "dense.safetensors")]
    found = tmp_path / "search"
    argv = ["search", *DIGITS, *weights, "--budget", "macs=0.6", "--calibration", "128", "--out", str(found)]
    agent = tmp_path / "agents" / "gnn-rl.safetensors"
    assert main([*argv, "--evaluations", "2", "--gnn-agent", str(agent), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    strategies = ["dp", "global", "uniform", "evolution", "bo", "amc", "galen", "gnn-rl"]
    assert agent.is_file(), "gnn-rl's trained agent, kept for other models"
    assert all(f"| {s} |" in printed for s in strategies)
    results = json.loads((found / "search.json").read_text())
    assert [r["strategy"] for r in results["rows"]] == strategies
    assert all(r["share"] <= 0.6 and 0 <= r["accuracy"] <= 1 for r in results["rows"])
    policy = zp.load_policy(found / "policy.json")
    assert policy.strategy == "dp" and (found / "policies" / "uniform.json").is_file()
    assert (found / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](search.png)" in (found / "search.md").read_text()
    out = tmp_path / "pruned"
    policy.precision = {"0": "int8", "3": "fp32", "8": "int8"}  # as an int8 search would say
    zp.save_policy(policy, found / "policy.json")
    prune = ["prune", *DIGITS, *weights, "--policy", str(found / "policy.json"), "--calibration", "128"]
    assert main([*prune, "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["policy"]["strategy"] == "dp" and metrics["policy"]["budget"] == "macs=0.6"
    assert metrics["policy"]["fp32"] == ["3"], "what export --int8 keeps in float"
    assert_int8_keeps(out, ("3",), monkeypatch)
    share = metrics["slim"]["macs"] / metrics["dense"]["macs"]
    assert share == pytest.approx(policy.predicted["share"], abs=0.01), "the policy's widths, as searched"
    assert zp.load(out)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    trained = tmp_path / "trained"  # search, then train once: HESSO prunes to the policy's widths
    compress = [
        "compress",
        *DIGITS,
        "--policy",
        str(found / "policy.json"),
        "--epochs",
        "2",
        "--out",
        str(trained),
    ]
    assert main([*compress, *FAST]) == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["slim"]["macs"] / metrics["dense"]["macs"] == pytest.approx(share, abs=1e-6)


def test_search_over_several_budgets_draws_the_front(dense_run: Path, tmp_path: Path, capsys) -> None:
    weights = ["--weights", str(dense_run / "dense.safetensors")]
    found = tmp_path / "front"
    argv = [
        "search",
        *DIGITS,
        *weights,
        "--budget",
        "macs=0.5,0.7",
        "--calibration",
        "64",
        "--out",
        str(found),
    ]
    assert main([*argv, "--no-compare", "--strategy", "uniform", "--no-progress"]) == 0
    results = json.loads((found / "search.json").read_text())
    assert results["budgets"] == ["macs=0.5", "macs=0.7"]
    assert [(r["budget"], r["strategy"]) for r in results["rows"]] == [
        ("macs=0.5", "uniform"),
        ("macs=0.7", "uniform"),
    ]
    assert [r["share"] <= float(r["budget"][5:]) for r in results["rows"]] == [True, True]
    assert zp.load_policy(found / "policy.json").budget == "macs=0.5", "the first budget's policy"
    assert (found / "policies" / "uniform@macs=0.7.json").is_file()
    assert "| macs=0.7 | uniform |" in (found / "search.md").read_text()
    assert (found / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_bad_input_is_one_line_and_writes_nothing(dense_run: Path, tmp_path: Path, capsys) -> None:
    weights = ["--weights", str(dense_run / "dense.safetensors")]
    out = tmp_path / "search"
    base = ["search", *DIGITS, *weights, "--out", str(out), "--no-progress"]
    assert "budget kind 'flops'" in error_of(capsys, [*base, "--budget", "flops=0.5"])
    assert "unknown runtime 'tvm'" in error_of(capsys, [*base, "--budget", "latency=0.3@tvm"])
    assert "--threads is 0" in error_of(capsys, [*base, "--budget", "latency=0.3", "--threads", "0"])
    assert "ask for macs=0." in error_of(capsys, [*base, "--budget", "macs=0.0001", "--calibration", "64"])
    (tmp_path / "agent.safetensors").write_text("not an agent")
    learned = ["--no-compare", "--strategy", "gnn-rl", "--calibration", "64"]
    assert "agent.safetensors is not a gnn-rl agent" in error_of(
        capsys, [*base, *learned, "--gnn-agent", str(tmp_path / "agent.safetensors")], status=1
    )
    assert not out.exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    prune = ["prune", *DIGITS, *weights, "--out", str(tmp_path / "p"), *FAST]
    assert "not a zigprune policy" in error_of(capsys, [*prune, "--policy", str(bad)])
    assert not (tmp_path / "p").exists()


def test_search_on_a_latency_budget_reports_measured_next_to_predicted(
    dense_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setitem(RUNTIMES, "fake", fake_runtime(fixed=0.5))
    weights = ["--weights", str(dense_run / "dense.safetensors")]
    found = tmp_path / "search"
    argv = ["search", *DIGITS, *weights, "--budget", "latency=0.6@fake", "--calibration", "64"]
    assert main([*argv, "--no-compare", "--latency-batch", "8", "--out", str(found), "--no-progress"]) == 0
    assert "| measured | predicted |" in capsys.readouterr().out
    row = json.loads((found / "search.json").read_text())["rows"][0]
    assert row["strategy"] == "dp" and row["measured"]["share"] <= 0.6 * 1.03
    assert zp.load_policy(found / "policy.json").measured == row["measured"]
