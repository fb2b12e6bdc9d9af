"""``compress`` end to end on tiny inputs: run directory, exact save/load and ONNX, resume, target parsing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zigprune as zp
from zigprune import data
from zigprune import runs as run
from zigprune.errors import OptimizerError, TargetError
from zigprune.optim import Target
from zigprune.runs import report as run_report
from zigprune.training import Hook, Loop

TINY = run.Config(subset=200, epochs=2, batch_size=50, onnx=False, latency=False, baseline=False)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One run with everything on: baseline, ONNX export and latency (the slow parts, once)."""
    out = tmp_path_factory.mktemp("run")
    config = replace(TINY, onnx=True, latency=True, baseline=True, latency_seconds=0.02)
    return out, run.compress(config, out, progress=False, log=lambda text: None, command="zigprune compress")


def test_run_directory_is_complete(full_run: tuple[Path, dict]) -> None:
    out, metrics = full_run
    names = {p.name for p in out.iterdir()}
    expected = {"run.json", "plan.json", "model.safetensors", "model.onnx", "metrics.json", "history.json"}
    assert expected | {"report.md", "training.png", "sparsity.png", "widths.png", "costs.png"} == names
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["slim"]["macs"] < metrics["dense"]["macs"] and metrics["reduction"]["macs"] > 1.5
    assert metrics["slim"]["accuracy"] == metrics["slim"]["full_model_accuracy"]
    assert 0 <= metrics["dense"]["accuracy"] <= 1
    assert set(metrics["speedup"]) == {"torch", "onnxruntime"} and set(metrics["speedup"]["torch"]) == {
        "1",
        "64",
    }
    assert metrics["optimizer_report"]["macs_left"] <= 0.5 + 1e-9
    torch_speedup = metrics["speedup"]["torch"]["64"]
    assert metrics["speedup_over_macs_ratio"]["torch"]["64"] == pytest.approx(
        torch_speedup / metrics["reduction"]["macs"]
    )
    history = json.loads((out / "history.json").read_text())["train"]
    assert len(history["epochs"]) == 2 and history["steps"][-1]["step"] == metrics["steps"] == 8
    report = (out / "report.md").read_text()
    assert "![Training](training.png)" in report and "| MACs" in report
    total = metrics["seconds"]["total"]
    assert f"total {total:.1f} s" in report, "report.md must show the total that metrics.json records"


def test_saved_model_loads_with_identical_outputs(full_run: tuple[Path, dict]) -> None:
    out, _ = full_run
    slim = zp.load(out)
    x = data.load("digits").test.tensors[0][:16]
    again = zp.load(out)
    with torch.no_grad():
        assert torch.equal(slim(x), again(x))
    assert (
        sum(p.numel() for p in slim.parameters())
        == json.loads((out / "metrics.json").read_text())["slim"]["params"]
    )


def test_onnx_matches_pytorch(full_run: tuple[Path, dict]) -> None:
    ort = pytest.importorskip("onnxruntime")
    out, _ = full_run
    slim = zp.load(out)
    x = data.load("digits").test.tensors[0][:64]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), slim(x), atol=1e-4)


class StopAt(Hook):
    def __init__(self, step: int) -> None:
        self.step = step

    def before_step(self, loop: Loop) -> None:
        if loop.step == self.step:
            raise KeyboardInterrupt


def test_resume_after_interrupt_gives_the_same_model(tmp_path: Path) -> None:
    quiet = {"progress": False, "log": lambda text: None}
    reference = run.compress(TINY, tmp_path / "a", **quiet)
    with pytest.raises(run.Interrupted, match=r"at step 3 of 8 .*--out .*b --resume"):
        run.compress(TINY, tmp_path / "b", hooks=(StopAt(3),), **quiet)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file() and not (
        tmp_path / "b" / "metrics.json"
    ).exists()
    with pytest.raises(run.RunDirError, match=r"unfinished run .*--resume"):
        run.compress(TINY, tmp_path / "b", **quiet)
    resumed = run.compress(run.Config(), tmp_path / "b", resume=True, **quiet)  # settings come from run.json
    assert resumed["config"] == reference["config"]
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()


def test_run_directory_rules(tmp_path: Path) -> None:
    quiet = {"progress": False, "log": lambda text: None}
    with pytest.raises(run.RunDirError, match="no checkpoint to resume"):
        run.compress(TINY, tmp_path, resume=True, **quiet)
    run.compress(replace(TINY, epochs=1), tmp_path, **quiet)
    with pytest.raises(run.RunDirError, match="holds a complete run; pass --force"):
        run.compress(TINY, tmp_path, **quiet)
    with pytest.raises(run.RunDirError, match="nothing to resume"):
        run.compress(TINY, tmp_path, resume=True, **quiet)
    (tmp_path / "mine.txt").write_text("kept")
    metrics = run.compress(replace(TINY, epochs=1, optimizer="dhspg"), tmp_path, force=True, **quiet)
    assert metrics["config"]["optimizer"] == "dhspg" and (tmp_path / "mine.txt").read_text() == "kept"
    assert metrics["config"]["cost_power"] == 0.5, "the default in force is recorded, not None"
    assert json.loads((tmp_path / "run.json").read_text())["cost_power"] == 0.5


def test_failure_after_training_leaves_no_complete_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_report, "render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run.compress(TINY, tmp_path, progress=False, log=lambda text: None)
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(run.RunDirError, match="unfinished run"):
        run.compress(TINY, tmp_path, progress=False, log=lambda text: None)


def test_bad_names_fail_before_touching_the_directory(tmp_path: Path) -> None:
    from zigprune.errors import DataError, ModelError

    with pytest.raises(ModelError, match=r"unknown model 'nope'.*digits_cnn"):
        run.compress(replace(TINY, model="nope"), tmp_path / "x")
    with pytest.raises(DataError, match=r"unknown dataset 'nope'; valid names: .*digits"):
        run.compress(replace(TINY, data="nope"), tmp_path / "x")
    with pytest.raises(
        OptimizerError, match="unknown optimizer 'sgd'; valid names: hesso, dhspg, hspg"
    ) as info:
        run.compress(replace(TINY, optimizer="sgd"), tmp_path / "x")
    assert not isinstance(info.value, TargetError), "an unknown optimizer is not a target error"
    with pytest.raises(run.TargetError, match=r"cost power 1.5 is outside \[0, 1\]"):
        run.compress(replace(TINY, cost_power=1.5), tmp_path / "x")
    with pytest.raises(run.TargetError, match="hspg has none; use --optimizer hesso or dhspg"):
        run.compress(replace(TINY, optimizer="hspg", latency_aware=True), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["hesso", "dhspg"])
def test_cost_power_and_rounding_reach_the_optimizer(name: str) -> None:
    model = zp.models.create("digits_cnn")
    space = zp.analyze(model, torch.zeros(1, 1, 8, 8), check=False)
    config = replace(TINY, optimizer=name, cost_power=0.5, round_to=4)
    optimizer = run.build_optimizer(name, space, config, Target.parse("macs=0.5"), 10)
    assert optimizer.target.cost_power == 0.5 and optimizer.target.round_to == 4
    assert optimizer.target.by == "macs" and optimizer.target.fraction == 0.5
    assert optimizer.target.cost is None


@pytest.mark.parametrize(
    ("target", "round_to", "given", "latency_aware", "expected"),
    [
        ("macs=0.5", 8, None, False, 0.5),
        ("macs=0.5", 1, None, False, 0.0),
        ("params=0.5", 8, None, False, 0.0),
        ("groups=0.5", 8, None, False, 0.0),
        ("0.5", 8, None, False, 0.5),
        ("macs=0.5", 1, None, True, 1.0),
        ("macs=0.5", 8, 0.0, False, 0.0),
        ("params=0.5", 8, 0.25, True, 0.25),
    ],
)
def test_cost_power_default_depends_on_the_target(
    target: str, round_to: int, given: float | None, latency_aware: bool, expected: float
) -> None:
    config = replace(TINY, target=target, round_to=round_to, cost_power=given, latency_aware=latency_aware)
    assert run.cost_power(config, Target.parse(target)) == expected


def test_latency_aware_prices_groups_by_measured_time() -> None:
    from zigprune.measure.layer_latency import LayerLatency

    model = zp.models.create("digits_cnn")
    space = zp.analyze(model, torch.zeros(1, 1, 8, 8), check=False)
    config = replace(TINY, latency_aware=True)
    optimizer = run.build_optimizer("hesso", space, config, Target.parse("macs=0.5"), 10)
    cost = optimizer.target.cost
    assert isinstance(cost, LayerLatency) and optimizer.target.cost_power == 1.0
    assert [layer.name for layer in cost.layers] == ["0", "3", "8"]
    assert cost.layers[1].op.input_shape == (64, 64, 8, 8)
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    weight = cost(none)
    assert weight.shape == (space.num_groups,) and bool((weight > 0).all())
    timed = len(cost._cache)
    assert torch.equal(cost(none), weight) and len(cost._cache) == timed
    half = torch.zeros(space.num_groups, dtype=torch.bool)
    for family in space.families:
        half[family.groups[: len(family.groups) // 2]] = True
    assert cost.estimate_ms(half) < 0.8 * cost.estimate_ms()


@pytest.mark.parametrize(
    ("text", "fraction", "by"),
    [("0.5", 0.5, "macs"), ("1.5x", 1 / 3, "macs"), ("groups=0.5", 0.5, "groups"), ("macs=0.4", 0.4, "macs"),
     ("params=0.3", 0.3, "params"),
     (" MACS = 2.5x ", 0.6, "macs"), ("groups=4x", 0.75, "groups")],
)  # fmt: skip
def test_parse_target(text: str, fraction: float, by: str) -> None:
    target = Target.parse(text)
    assert target.by == by and target.fraction == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("text", "message"),
    [("1.5", "outside (0, 1)"), ("0", "outside (0, 1)"), ("macs=1", "outside (0, 1)"),
     ("macs=-0.2", "outside"), ("flops=0.5", "kind 'flops' is not groups, macs or params"),
     ("macs=half", "is not a number"),
     ("macs=1x", "must be above 1x"), ("macs=0.5x", "must be above 1x"), ("nan", "outside (0, 1)")],
)  # fmt: skip
def test_parse_target_errors(text: str, message: str) -> None:
    with pytest.raises(run.TargetError) as info:
        Target.parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_default_out_names() -> None:
    assert run.default_out(run.Config()) == Path("runs/digits_cnn-digits")
    config = run.Config(model="nets/my_net.py:build", data="imagefolder:/data/photos/")
    assert run.default_out(config) == Path("runs/my_net-build-imagefolder-photos")
    other = run.Config(model="nets/other_net.py:build", data="imagefolder:/data/photos/")
    assert run.default_out(other) != run.default_out(config), "two files' build factories must not collide"
    assert run.default_out(run.Config(model="mypkg.nets:build")) == Path("runs/nets-build-digits")
    assert run.default_out(run.Config(model="hf:/models/tiny-vit", data="cifar10")) == Path(
        "runs/tiny-vit-cifar10"
    )


def test_hugging_face_folder_compresses_and_reloads(tmp_path: Path) -> None:
    """``hf:PATH`` end to end: a tiny ViT classifier on 8x8 digits, pruned, saved and rebuilt exactly."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "vit"
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=10,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    out = tmp_path / "run"
    config = replace(TINY, model=f"hf:{folder}", target="macs=0.3", lr=0.01)
    metrics = run.compress(config, out, progress=False, log=lambda text: None, command="test")
    assert metrics["reduction"]["macs"] >= 1 / 0.7 - 0.02
    assert metrics["slim"]["accuracy"] == metrics["slim"]["full_model_accuracy"]
    slim = zp.load(out)
    x = data.load("digits").test.tensors[0][:8]
    with torch.no_grad():
        assert type(slim).__name__ == "ViTForImageClassification"
        assert slim(x).logits.shape == (8, 10)
        assert torch.equal(slim(x).logits, zp.load(out)(x).logits)
