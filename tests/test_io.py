"""Save/load of slim models (safetensors + plan.json, no pickle) and ONNX export checked in ONNX Runtime."""

from __future__ import annotations

import json
import logging
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import zigprune as zp
from zigprune import io
from zigprune.core.trace import Inputs
from zigprune.errors import ExportError, LoadError, ModelError
from zigprune.io import onnx, saved
from zigprune.io import plan as plan_file
from zigprune.models.spec import ModelSpec, resolve

TINY = """
from torch import nn

STEM = 8


def make(width=6):
    return nn.Sequential(
        nn.Conv2d(1, STEM, 3, padding=1), nn.BatchNorm2d(STEM), nn.ReLU(),
        nn.Conv2d(STEM, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(width, 3),
    )
"""


@dataclass
class Run:
    """A pruned model, its space, its slim model and the spec it was built from."""

    spec: ModelSpec
    inputs: Any
    space: zp.GroupSpace
    slim: nn.Module
    zeroed: list[int]


def prune(spec: ModelSpec, inputs: Any, seed: int = 0) -> Run:
    """Zero half the groups at random and construct (which checks the outputs)."""
    torch.manual_seed(seed)
    model = spec.build().eval()
    space = zp.analyze(model, inputs, check=False)
    order = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(seed))
    zeroed = sorted(order[: space.num_groups // 2].tolist())
    space.zero_(zeroed)
    return Run(spec, inputs, space, space.construct().eval(), zeroed)


@pytest.fixture(scope="module")
def resnet() -> Run:
    spec = resolve("resnet20", in_channels=1)
    return prune(spec, spec.example_inputs(batch=2, input_shape=(1, 16, 16)))


@pytest.fixture(scope="module")
def resnet_dir(resnet: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zp.save(resnet.slim, resnet.space, resnet.spec, tmp_path_factory.mktemp("resnet"))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Run, Path]:
    """A run of a tiny CNN from a factory file, saved into ``tmp_path/run``."""
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    spec = resolve(f"{path}:make", width=6)
    run = prune(spec, spec.example_inputs(batch=2, input_shape=(1, 8, 8)))
    return run, zp.save(run.slim, run.space, run.spec, tmp_path / "run")


def outputs_equal(a: nn.Module, b: nn.Module, *inputs: Any) -> bool:
    with torch.no_grad():
        return all(torch.equal(a(x), b(x)) for x in inputs)


def load_error(directory: Path, match: str, **kwargs: Any) -> str:
    kwargs.setdefault("trust_factory", True)  # the tiny runs name a factory file this test wrote
    with pytest.raises(LoadError, match=match) as info:
        zp.load(directory, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def edit_plan(directory: Path, **changes: Any) -> None:
    plan = json.loads((directory / "plan.json").read_text())
    plan.update(changes)
    (directory / "plan.json").write_text(json.dumps(plan))


def test_resnet20_round_trip_is_exact_without_pickle(
    resnet: Run, resnet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load must never unpickle")

    for target, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(target, name, refuse)
    loaded = zp.load(resnet_dir)
    assert not loaded.training
    assert outputs_equal(
        loaded, resnet.slim, resnet.inputs, torch.randn(5, 1, 16, 16), torch.randn(1, 1, 20, 20)
    )


def test_plan_records_what_was_pruned(resnet: Run, resnet_dir: Path) -> None:
    plan = json.loads((resnet_dir / "plan.json").read_text())
    assert (plan["format"], plan["version"], plan["torch"]) == ("zigprune-plan", 1, torch.__version__)
    assert plan["spec"] == {"text": "resnet20", "kwargs": {"in_channels": 1}}
    assert plan["inputs"] == {
        "kind": "tensor",
        "args": [{"shape": [2, 1, 16, 16], "dtype": "float32"}],
        "kwargs": {},
    }
    assert plan["num_groups"] == resnet.space.num_groups
    assert plan["pruned_groups"] == resnet.zeroed
    params = [sum(p.numel() for p in m.parameters()) for m in (resnet.space.model, resnet.slim)]
    assert plan["params"] == {"before": params[0], "after": params[1]} and params[1] < params[0] / 2
    assert plan["macs"]["after"] < plan["macs"]["before"]
    stem = plan["widths"][0]
    assert stem["before"] == 16 and 0 < stem["after"] < 16
    assert plan["fingerprint"].startswith("sha256:") and plan["fingerprint"] == plan_file.fingerprint(
        resnet.space
    )
    weights = load_file(str(resnet_dir / "model.safetensors"))
    assert weights["conv1.weight"].shape[0] == stem["after"]


def test_factory_file_round_trip(tiny: tuple[Run, Path]) -> None:
    run, directory = tiny
    loaded = zp.load(directory, trust_factory=True)
    assert loaded[3].out_channels == run.slim[3].out_channels < 6
    assert outputs_equal(loaded, run.slim, run.inputs, torch.randn(4, 1, 8, 8))


def test_hf_gpt2_round_trip_keeps_tied_embeddings(tmp_path: Path) -> None:
    import hf_zoo

    model, _ = hf_zoo.HF_MODELS["gpt2"]()
    model.save_pretrained(tmp_path / "gpt2")
    spec = resolve(f"hf:{tmp_path / 'gpt2'}")
    run = prune(spec, spec.example_inputs(batch=2))
    directory = zp.save(run.slim, run.space, run.spec, tmp_path / "run", metadata={"note": "tiny"})
    loaded = zp.load(directory)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert loaded.transformer.h[0].mlp.c_fc.weight.shape == run.slim.transformer.h[0].mlp.c_fc.weight.shape
    ids = torch.randint(0, 128, (3, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, run.slim(ids).logits)
    assert json.loads((directory / "plan.json").read_text())["metadata"] == {"note": "tiny"}


def test_half_precision_weights_keep_their_dtype(tiny: tuple[Run, Path], tmp_path: Path) -> None:
    run, _ = tiny
    half = run.slim.to(torch.bfloat16)
    directory = zp.save(half, run.space, run.spec, tmp_path / "half")
    loaded = zp.load(directory, trust_factory=True)
    assert loaded[0].weight.dtype == torch.bfloat16
    assert torch.equal(loaded[0].weight, half[0].weight)


def test_missing_folder_and_files(tiny: tuple[Run, Path], tmp_path: Path) -> None:
    _, directory = tiny
    load_error(
        tmp_path / "nowhere", r"no saved model at '.*nowhere': not a folder; pass the folder zp\.save wrote"
    )
    (directory / "model.safetensors").unlink()
    load_error(directory, r"has no model\.safetensors; save the model again with zp\.save")
    (directory / "plan.json").unlink()
    load_error(directory, r"has no plan\.json: the save did not finish or this is not a zigprune save")


def test_truncated_plan(tiny: tuple[Run, Path]) -> None:
    _, directory = tiny
    text = (directory / "plan.json").read_text()
    (directory / "plan.json").write_text(text[: len(text) // 2])
    load_error(directory, r"plan\.json' is corrupt \(.*\); save the model again with zp\.save")


def test_incomplete_plan_and_unknown_versions(tiny: tuple[Run, Path]) -> None:
    _, directory = tiny
    edit_plan(directory, version=99)
    load_error(directory, r"has format version 99, this zigprune reads up to 1; upgrade zigprune")
    edit_plan(directory, version=1, fingerprint=None)
    load_error(directory, r"is incomplete \('fingerprint' missing or malformed\); save the model again")
    edit_plan(directory, format="something-else")
    load_error(directory, r"is not a zigprune plan")


def test_truncated_weights(tiny: tuple[Run, Path]) -> None:
    _, directory = tiny
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    load_error(directory, r"model\.safetensors' is corrupt or was changed after saving \(its sha256 differs")
    edit_plan(directory, weights={"file": "model.safetensors", "sha256": plan_file.sha256_file(weights)})
    load_error(
        directory, r"model\.safetensors' does not fit the rebuilt slim model \(.*\); save the model again"
    )


def test_weights_of_the_wrong_shape(tiny: tuple[Run, Path]) -> None:
    _, directory = tiny
    weights = directory / "model.safetensors"
    state = load_file(str(weights))
    state["7.weight"] = torch.zeros(3, 9)
    save_file(state, str(weights))
    edit_plan(directory, weights={"file": "model.safetensors", "sha256": plan_file.sha256_file(weights)})
    load_error(
        directory,
        r"does not fit the rebuilt slim model \(ValueError: 7\.weight has shape \(3, 9\) in the file",
    )


def test_changed_factory_is_detected(tiny: tuple[Run, Path], tmp_path: Path) -> None:
    _, directory = tiny
    (tmp_path / "tiny.py").write_text(TINY.replace("STEM = 8", "STEM = 12"))
    load_error(
        directory,
        r"different group structure than the saved one \(fingerprint mismatch\): its factory changed",
    )
    (tmp_path / "tiny.py").unlink()
    load_error(
        directory, r"cannot rebuild the model from spec '.*tiny\.py:make' \(ModelError: .*does not exist"
    )


def test_checksum_mismatch(tiny: tuple[Run, Path]) -> None:
    run, directory = tiny
    plan = json.loads((directory / "plan.json").read_text())
    plan["checksum"][0]["samples"][0] += 0.5
    (directory / "plan.json").write_text(json.dumps(plan))
    load_error(
        directory, r"does not reproduce the saved outputs \(output 0 value 0 is .*, checksum mismatch\)"
    )
    assert outputs_equal(zp.load(directory, check=False, trust_factory=True), run.slim, run.inputs)


def test_failed_save_leaves_no_plan(tiny: tuple[Run, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    run, directory = tiny
    before = (directory / "model.safetensors").read_bytes()

    def fail(model: nn.Module, path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(saved, "_save_weights", fail)
    with pytest.raises(OSError, match="disk full"):
        zp.save(run.slim, run.space, run.spec, directory)
    assert sorted(p.name for p in directory.iterdir()) == ["model.safetensors"]
    assert (directory / "model.safetensors").read_bytes() == before


def test_save_refuses_a_wrong_spec_or_a_model_that_is_not_slim(
    tiny: tuple[Run, Path], tmp_path: Path
) -> None:
    run, _ = tiny
    with pytest.raises(
        ModelError, match=r"builds a model with a different group structure than the analysed one"
    ):
        zp.save(run.slim, run.space, ModelSpec(run.spec.text, {"width": 7}), tmp_path / "a")
    with pytest.raises(
        ModelError,
        match=r"is not the slim model of this space \(0\.weight has shape \(8, 1, 3, 3\), expected \(\d, 1",
    ):
        zp.save(run.space.model, run.space, run.spec, tmp_path / "b")
    with pytest.raises(ModelError, match="metadata must be JSON values"):
        zp.save(run.slim, run.space, run.spec, tmp_path / "c", metadata={"x": object()})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_save_records_given_example_inputs(tiny: tuple[Run, Path], tmp_path: Path) -> None:
    run, _ = tiny
    directory = zp.save(run.slim, run.space, run.spec, tmp_path / "x", example_inputs=torch.randn(3, 1, 8, 8))
    assert json.loads((directory / "plan.json").read_text())["inputs"]["args"][0]["shape"] == [3, 1, 8, 8]
    assert outputs_equal(zp.load(directory, trust_factory=True), run.slim, run.inputs)


def test_inputs_are_described_and_remade_deterministically() -> None:
    inputs = Inputs((torch.randn(2, 3),), {"ids": torch.tensor([[4, 9], [5, 7]]), "flag": False})
    description = io.describe_inputs(inputs)
    assert description == {
        "kind": "tuple",
        "args": [{"shape": [2, 3], "dtype": "float32"}],
        "kwargs": {
            "ids": {"shape": [2, 2], "dtype": "int64", "low": 4, "high": 10},
            "flag": {"value": False},
        },
    }
    a, b = io.make_inputs(description), io.make_inputs(json.loads(json.dumps(description)))
    assert torch.equal(a.args[0], b.args[0]) and torch.equal(a.kwargs["ids"], b.kwargs["ids"])
    assert a.kwargs["flag"] is False and int(a.kwargs["ids"].min()) >= 4 and int(a.kwargs["ids"].max()) < 10


def test_onnx_export_of_slim_resnet20_matches_at_other_batches(
    resnet: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="zigprune.io"):
        path = zp.export_onnx(resnet.slim, resnet.inputs, tmp_path / "slim.onnx")
    assert "dynamo=True" in caplog.text
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    for batch in (1, 3):
        x = torch.randn(batch, 1, 16, 16)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            reference = resnet.slim(x)
        assert got.shape == (batch, 10)
        assert (torch.from_numpy(got) - reference).abs().max().item() <= 1e-4


def test_onnx_falls_back_to_the_torchscript_exporter(
    tiny: tuple[Run, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run, _ = tiny

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no dynamo today")

    monkeypatch.setattr(onnx, "_export_dynamo", fail)
    x = torch.randn(1, 1, 8, 8)
    with caplog.at_level(logging.INFO, logger="zigprune.io"):
        path = zp.export_onnx(run.slim, x, tmp_path / "tiny.onnx")
    assert "dynamo ONNX exporter failed (RuntimeError: no dynamo today)" in caplog.text
    assert "torch.onnx.export(dynamo=False)" in caplog.text
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": torch.cat([x, x, x]).numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(got) - run.slim(torch.cat([x, x, x]))).abs().max().item() <= 1e-4
    with pytest.raises(ExportError, match=r"ONNX Runtime output 0 differs from PyTorch by .* at batch 2"):
        zp.export_onnx(run.slim, x, tmp_path / "strict.onnx", atol=-1.0)
    assert not (tmp_path / "strict.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "onnx" in p.name) == ["tiny.onnx"]


def test_onnx_needs_onnxruntime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"pip install 'zigprune\[onnx\]'"):
        zp.export_onnx(nn.Linear(2, 2), torch.randn(2, 2), tmp_path / "x.onnx")


def test_save_load_docs_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    doc = Path(__file__).resolve().parents[1] / "docs" / "save-load.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(blocks), str(doc), "exec"), namespace)
    assert namespace["onnx_file"].is_file()
