"""The floors above the core (issue 28): the public API takes and exports the same types, the run
library does the work the CLI only prints, and a lower step of a run does not import a higher one."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest
import torch

import zigprune as zp
from zigprune import runs
from zigprune.errors import RunDirError, TargetError
from zigprune.measure.demo import random_construction
from zigprune.models import create
from zigprune.runs.evaluate_run import evaluate_run

SRC = Path(zp.__file__).parent


def test_what_the_public_functions_take_is_exported_and_refused_with_one_error() -> None:
    assert zp.Target(0.5, "macs") == zp.Target.parse("macs=2x")
    for bad in (lambda: zp.Target(2.0), lambda: zp.Target(0.5, "flops"), lambda: zp.Target.parse("3")):
        with pytest.raises(TargetError):
            bad()
    with pytest.raises(TargetError, match="max_share"):
        zp.Limits(max_share=2.0)
    space = zp.analyze(create("digits_cnn"), torch.randn(2, 1, 8, 8))
    ids = zp.prune(space, None, zp.Target(0.3, "macs", limits=zp.Limits(min_keep=0.0)), method="magnitude")
    assert len(ids) > 0


def test_evaluate_run_is_the_library_call_behind_zigprune_eval(dense_run: Path) -> None:
    found = evaluate_run(dense_run)
    recorded = json.loads((dense_run / "metrics.json").read_text())["slim"]["accuracy"]
    assert found.quality["accuracy"] == pytest.approx(recorded, abs=1e-9)
    assert found.params > 0 and f"accuracy {recorded:.2%}" in found.describe()


def test_the_resume_check_names_each_changed_setting(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": "digits_cnn", "lr": 0.05, "epochs": 3}))
    given = runs.Config(lr=0.1, epochs=3)
    with pytest.raises(RunDirError, match=r"drop --lr \(saved: 0.05\)$"):
        runs.check_resume(out, given, {"lr": 0.1, "epochs": 3})
    assert runs.check_resume(out, runs.Config(lr=0.05), {"lr": 0.05}).epochs == 3


def test_the_analyze_demo_builds_an_exact_smaller_model() -> None:
    model = create("digits_cnn").eval()
    before = [p.clone() for p in model.parameters()]
    demo = random_construction(model, torch.randn(3, 1, 8, 8), 0.5, seed=1)
    assert demo.max_diff < 1e-4 and demo.after["macs"] < demo.before["macs"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the model is untouched"
    assert "x fewer" in demo.describe()


def test_a_prune_run_checks_its_target_once(
    dense_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zigprune.runs.prune_job import PruneConfig, prune_run

    module = importlib.import_module("zigprune.posttrain.prune")

    calls = []
    original = module.check_reachable
    monkeypatch.setattr(module, "check_reachable", lambda *a, **k: calls.append(1) or original(*a, **k))
    weights = str(dense_run / "dense.safetensors")
    quick = {"model": "digits_cnn", "data": "digits", "weights": weights, "onnx": False, "latency": False}
    config = PruneConfig(method="magnitude", calibration=32, **quick)
    prune_run(config, tmp_path / "run", progress=False, log=lambda text: None)
    assert calls == [1]
    with pytest.raises(TargetError):
        prune_run(PruneConfig(target="macs=0.999", **quick), tmp_path / "never", progress=False, log=print)
    assert not (tmp_path / "never").exists(), "an unreachable target writes nothing"


def _imports(path: Path) -> set[Path]:
    """The zigprune source files importing ``path`` runs: the files its relative imports name and their
    packages' ``__init__`` (the package root aside, which imports the whole public API)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            parts = node.module.split(".") if node.module else []
            names = [[*parts, a.name] for a in node.names] if not parts or node.module is None else [parts]
            for name in names:
                target = base.joinpath(*name)
                for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                    if candidate.is_file():
                        found.add(candidate)
                        found |= {d / "__init__.py" for d in candidate.parents if SRC in d.parents}
    return found


def test_writing_run_json_does_not_pull_the_report_or_deployment() -> None:
    seen, todo = set(), [SRC / "runs" / "rundir.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imports(path))
    names = {str(p.relative_to(SRC)) for p in seen}
    assert "runs/rundir.py" in names and "runs/config.py" in names
    assert not any(n.startswith(("deploy/", "training/")) or n == "runs/report.py" for n in names), names


def test_save_takes_the_writers_order_and_warns_on_the_old_one(tmp_path: Path) -> None:
    space = zp.analyze(create("digits_cnn"), torch.randn(2, 1, 8, 8))
    space.zero_(range(0, space.num_groups, 3))
    slim = space.construct().eval()
    assert zp.save(slim, space, "digits_cnn", tmp_path / "new") == tmp_path / "new"
    with pytest.warns(FutureWarning, match=r"\(model, space, spec, directory\)"):
        old = zp.save(tmp_path / "old", slim, space, "digits_cnn")
    assert old == tmp_path / "old"
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(zp.load(old)(x), slim(x)) and torch.allclose(zp.load(tmp_path / "new")(x), slim(x))


def test_run_data_is_one_loader_for_images_and_text(tiny_bert: Path, text_file: Path) -> None:
    """load_run_data fits a zoo model to image data and tokenizes text with the model's tokenizer; the
    calibration recipe draws the same inputs for a seed, the text batches match the tokenizer's own."""
    from zigprune.data.text import batches, load_text
    from zigprune.io.weights import tokenizer
    from zigprune.runs.run_data import load_run_data

    images = load_run_data("digits_cnn", "digits")
    assert images.labelled and images.spec.kwargs["num_classes"] == 10
    first, again = (images.calibration(50, seed=3, batch_size=16) for _ in range(2))
    assert [b.shape[0] for b in first] == [16, 16, 16, 2] and all(
        torch.equal(a, b) for a, b in zip(first, again)
    )
    assert not torch.equal(first[0], images.calibration(50, seed=4, batch_size=16)[0])
    assert images.example(5).shape == (5, 1, 8, 8) and "test samples of digits" in images.evaluated
    assert 0 <= images.quality()(images.spec.build())["accuracy"] <= 1

    name = f"text:{text_file}"
    text = load_run_data(f"hf:{tiny_bert}", name, max_length=32)
    assert not text.labelled and text.evaluated.endswith(f"held-out lines of {name}")
    tok = tokenizer(text.spec)
    direct = tok(load_text(name).test[:8], padding=True, truncation=True, max_length=32, return_tensors="pt")
    ours = text.held_out(8)[0]
    assert torch.equal(ours["input_ids"], direct["input_ids"])
    assert torch.equal(
        batches(tok, load_text(name).test[:8], batch_size=8, max_length=32)[0]["input_ids"],
        direct["input_ids"],
    )
    dense = text.spec.build()
    assert text.quality(dense)(dense)["cosine"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="pass dense"):
        text.quality()
