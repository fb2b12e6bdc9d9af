"""A run folder never chooses code to run: every entry point refuses a plan or run.json that names a factory
the caller did not name or allow, and the bait (a marker file) is never created."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.cli import main
from zigprune.errors import LoadError, RunDirError
from zigprune.models.spec import resolve

FACTORY = """
from torch import nn


def make(width=6):
    conv = nn.Conv2d(1, width, 3, padding=1)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(1), nn.Linear(width * 64, 3))
"""

BAIT = """
from pathlib import Path

Path({marker!r}).write_text("ran")


def build(**kwargs):
    raise SystemExit("bait factory ran")
"""


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A slim model of a factory-file network, saved with zp.save into ``tmp_path/run``."""
    (tmp_path / "net.py").write_text(FACTORY)
    spec = resolve(f"{tmp_path / 'net.py'}:make")
    model = spec.build().eval()
    space = zp.analyze(model, spec.example_inputs(batch=2, input_shape=(1, 8, 8)))
    space.zero_([0, 1])
    return zp.save(space.construct(), space, spec, tmp_path / "run")


def baited(folder: Path, text: str) -> Path:
    """``folder``'s plan edited to name ``text`` as its factory (as an attacker would)."""
    plan = json.loads((folder / "plan.json").read_text())
    plan["spec"] = {"text": text, "kwargs": plan["spec"]["kwargs"]}
    (folder / "plan.json").write_text(json.dumps(plan))
    return folder


def baits(tmp_path: Path, saved: Path) -> list[tuple[Path, Path]]:
    """(run folder, marker) pairs: a stdlib function that would touch the marker, and a bait file."""
    first, second = tmp_path / "marker-1", tmp_path / "marker-2"
    module_bait = baited(shutil.copytree(saved, tmp_path / "bait-module"), "subprocess:run")
    plan = json.loads((module_bait / "plan.json").read_text())
    plan["spec"]["kwargs"] = {"args": ["touch", str(first)]}
    (module_bait / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "bait.py").write_text(BAIT.format(marker=str(second)))
    file_bait = baited(shutil.copytree(saved, tmp_path / "bait-file"), f"{tmp_path / 'bait.py'}:build")
    return [(module_bait, first), (file_bait, second)]


def test_load_refuses_a_factory_the_folder_names(tmp_path: Path, saved: Path) -> None:
    for folder, marker in baits(tmp_path, saved):
        with pytest.raises(LoadError, match="trust_factory=True") as info:
            zp.load(folder)
        assert "\n" not in str(info.value)
        assert not marker.exists(), f"zp.load ran the code {folder.name} names"


@pytest.mark.parametrize("command", ["eval", "export"])
def test_cli_refuses_a_factory_the_folder_names(
    command: str, tmp_path: Path, saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder, marker in baits(tmp_path, saved):
        assert main(
            [command, str(folder), "--data", "digits"] if command == "eval" else [command, str(folder)]
        )
        err = capsys.readouterr().err
        assert "--trust-factory" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not marker.exists()


def test_report_never_builds_a_model(tmp_path: Path, saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folder, marker in baits(tmp_path, saved):
        main(["report", str(folder)])
        assert not marker.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_resume_refuses_a_factory_the_folder_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker, out = tmp_path / "marker", tmp_path / "run"
    (tmp_path / "bait.py").write_text(BAIT.format(marker=str(marker)))
    out.mkdir()
    config = {"model": f"{tmp_path / 'bait.py'}:build", "data": "digits", "epochs": 1}
    (out / "run.json").write_text(json.dumps(config))
    (out / "checkpoint.safetensors").write_bytes(b"")
    assert main(["compress", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--trust-factory" in err and "Traceback" not in err
    with pytest.raises(RunDirError, match="trust the folder"):
        zp_compress(out)
    assert not marker.exists()


def zp_compress(out: Path) -> None:
    from zigprune.runs import Config, compress

    compress(Config(), out, resume=True)


def test_the_caller_names_or_allows_the_factory(saved: Path, tmp_path: Path) -> None:
    x = torch.randn(2, 1, 8, 8)
    expected = zp.load(saved, trust_factory=True)
    namespace: dict = {}
    exec(FACTORY, namespace)
    by_callable = zp.load(saved, factory=namespace["make"])
    by_text = zp.load(saved, factory=f"{tmp_path / 'net.py'}:make")
    with torch.no_grad():
        assert torch.equal(by_callable(x), expected(x)) and torch.equal(by_text(x), expected(x))
    assert isinstance(by_text, nn.Module)
    with pytest.raises(LoadError, match=r"not an nn\.Module"):
        zp.load(saved, factory=lambda **kwargs: "not a model")


def test_zoo_models_load_without_being_allowed(tmp_path: Path) -> None:
    spec = resolve("digits_cnn")
    model = spec.build().eval()
    space = zp.analyze(model, spec.example_inputs(batch=2))
    space.zero_([0])
    folder = zp.save(space.construct(), space, spec, tmp_path / "zoo")
    assert isinstance(zp.load(folder), nn.Module)


def test_a_relative_factory_path_is_saved_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan.json records the factory file's absolute path, so the run loads from any working folder."""
    (tmp_path / "net.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    spec = resolve("net.py:make")
    model = spec.build().eval()
    space = zp.analyze(model, spec.example_inputs(batch=2, input_shape=(1, 8, 8)))
    space.zero_([0])
    folder = zp.save(space.construct(), space, spec, tmp_path / "run")
    assert json.loads((folder / "plan.json").read_text())["spec"]["text"] == f"{tmp_path / 'net.py'}:make"
    monkeypatch.chdir(tmp_path.parent)
    assert isinstance(zp.load(folder, trust_factory=True), nn.Module)


def test_saved_files_share_one_mode(saved: Path) -> None:
    """model.safetensors is written with the same permissions as plan.json (it was 0600)."""
    modes = {path.name: path.stat().st_mode & 0o777 for path in saved.iterdir()}
    assert modes["model.safetensors"] == modes["plan.json"], modes
