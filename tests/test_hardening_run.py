"""Issue 17, run hardening: zoo models fit the data, image bombs, foreign checkpoints, Ctrl-C after
training, divergence, factory paths and folder names, documented times, and the CLI module split."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_compress import StopAt
from torch import nn
from torch.utils.data import TensorDataset

import zigprune as zp
from zigprune import data, models
from zigprune import runs as run
from zigprune.cli import main
from zigprune.errors import DataError, DivergedError, ModelError, ZigpruneError
from zigprune.measure import latency
from zigprune.runs.run_data import fit_spec
from zigprune.training import Loop, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--subset", "200", "--epochs", "1", "--batch-size", "50", "--no-onnx", "--no-progress"]
QUIET = {"progress": False, "log": lambda text: None}
NOT_IMAGE_MODELS = {"conv1d_net", "transformer_classifier"}


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str], status: int) -> str:
    """The one error line the CLI printed on stderr (after any stage log) for ``argv``, which must exit
    with ``status``."""
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("zigprune: ")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` and its bytes, to show a failed command changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1. zoo models take what compress passes ----------------------------------------------------------------


def image_data(shape: tuple[int, ...], classes: int) -> data.Dataset:
    """A four-sample in-memory dataset of ``shape`` images, as a loader would return it."""
    images, labels = torch.zeros(4, *shape), torch.zeros(4, dtype=torch.long)
    sets = TensorDataset(images, labels)
    return data.Dataset("fake", sets, sets, classes, shape)


@pytest.mark.parametrize("name", sorted(set(models.names()) - NOT_IMAGE_MODELS))
def test_every_image_zoo_model_builds_with_what_compress_passes(name: str) -> None:
    dataset = image_data((1, 8, 8), classes=7)
    spec = fit_spec(name, dataset)
    torch.manual_seed(0)
    model = spec.build().eval()
    with torch.no_grad():
        out = model(spec.example_inputs(2, dataset.input_shape))
    assert out.shape == (2, 7)


def test_fit_kwargs_pass_only_what_a_factory_takes() -> None:
    assert models.fit_kwargs("mlp", (3, 32, 32), 10) == {"num_classes": 10, "in_features": 3072}
    assert models.fit_kwargs("vgg16_bn", (1, 28, 28), 10) == {
        "num_classes": 10, "in_channels": 1, "image_size": 28,
    }  # fmt: skip
    assert models.fit_kwargs("resnet20", (3, 32, 32), 5) == {"num_classes": 5, "in_channels": 3}


@pytest.mark.parametrize("name", sorted(NOT_IMAGE_MODELS))
def test_a_zoo_model_that_cannot_take_images_says_which_can(name: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not samples of shape \(1, 8, 8\); pick one that does: .*mlp"):
        run.compress(run.Config(model=name, subset=20, epochs=1), tmp_path / "x", **QUIET)
    assert not (tmp_path / "x").exists(), "the folder is not touched for a model that cannot run"


def test_compress_runs_the_zoo_mlp(tmp_path: Path) -> None:
    out = tmp_path / "mlp"
    argv = ["compress", "--model", "mlp", *TINY, "--no-baseline", "--no-latency", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spec"]["kwargs"] == {"num_classes": 10, "in_features": 64}
    assert metrics["slim"]["macs"] < metrics["dense"]["macs"]


# -- 2. an image whose header claims a huge size ------------------------------------------------------------


def claim_size(path: Path, width: int, height: int) -> None:
    """Rewrite a PNG's header (IHDR) to claim ``width`` x ``height`` pixels, with a valid checksum."""
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))


def test_an_image_bomb_is_a_data_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    for name in ("train/a/1.png", "train/b/2.png", "val/a/3.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name)
    claim_size(tmp_path / "train/b/2.png", 40000, 40000)
    with pytest.raises(DataError, match=r"2\.png is too large to decode safely .*shrink or remove it"):
        data.load(f"imagefolder:{tmp_path}")
    err = error_of(capsys, ["compress", "--data", f"imagefolder:{tmp_path}", "--out", str(tmp_path / "r")], 2)
    assert "2.png is too large" in err


# -- 3 and 4. Ctrl-C while latency is timed; then foreign checkpoints ---------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A CLI run (with its dense baseline) stopped by Ctrl-C while latency is timed: (folder, stderr)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    argv = ["compress", *TINY, "--latency-seconds", "0.01", "--out", str(out)]
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.setattr(latency, "compare", ctrl_c)
        assert main(argv) == 130
    return out, err.getvalue()


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A copy of a run folder, so each test changes its own."""
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_ctrl_c_while_timing_says_how_to_resume(interrupted: tuple[Path, str], tmp_path: Path) -> None:
    folder, err = interrupted
    last = err.strip().splitlines()[-1]
    assert (
        last == f"zigprune: Ctrl-C: stopped latency; continue with: zigprune compress --out {folder} --resume"
    )
    assert "Traceback" not in err
    names = {p.name for p in folder.iterdir()}
    assert {"run.json", "checkpoint.safetensors", "baseline.safetensors"} <= names
    assert "metrics.json" not in names, "an interrupted run is not complete"
    out = copy_of(folder, tmp_path)
    assert main(["compress", "--out", str(out), "--resume", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dense"]["accuracy"] is not None and metrics["speedup"]["torch"]
    assert not (out / "checkpoint.safetensors").exists() and not (out / "baseline.safetensors").exists()


# A compress whose latency timing announces itself on stdout, then takes a minute: SIGTERM lands in it.
SLOW_TIMING = """
import sys, time
from zigprune.cli import main
from zigprune.measure import latency
compare = latency.compare
def slow(*args, **kwargs):
    print("timing", flush=True)
    time.sleep(60)
    return compare(*args, **kwargs)
latency.compare = slow
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_timing_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["compress", *TINY, "--no-baseline", "--latency-seconds", "0.01", "--out", str(out)]
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_TIMING, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "timing\n", child.communicate()[1]
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        f"zigprune: SIGTERM: stopped latency; continue with: zigprune compress --out {out} --resume"
    )
    assert "Traceback" not in err
    assert (out / "checkpoint.safetensors").is_file() and not (out / "metrics.json").exists()
    assert main(["compress", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["speedup"]["torch"]


def test_the_cli_restores_the_sigterm_handler(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["report", str(tmp_path / "missing")]) != 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_refuses_another_seeds_checkpoint(
    interrupted: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    config = run.Config(subset=200, epochs=1, batch_size=50, onnx=False, seed=1)
    with pytest.raises(run.Interrupted):
        run.compress(config, other, hooks=(StopAt(2),), **QUIET)
    out = copy_of(interrupted[0], tmp_path)
    shutil.copy(other / "checkpoint.safetensors", out / "checkpoint.safetensors")
    before = files_of(out)
    err = error_of(capsys, ["compress", "--out", str(out), "--resume", "--no-progress"], 2)
    assert "does not belong to the run" in err and "seed 1 (this run: 0)" in err
    assert "start over with --force, or pass --out another folder" in err
    assert files_of(out) == before, "a refused resume changes nothing"
    with pytest.raises(run.RunDirError, match="does not belong"):
        run.compress(run.Config(), out, resume=True, **QUIET)


def test_resume_refuses_the_baseline_copied_over_the_checkpoint(
    interrupted: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_of(interrupted[0], tmp_path)
    shutil.copy(out / "baseline.safetensors", out / "checkpoint.safetensors")
    before = files_of(out)
    err = error_of(capsys, ["compress", "--out", str(out), "--resume", "--no-progress"], 2)
    assert "it is the baseline stage's checkpoint, not the train stage's" in err and "--force" in err
    assert files_of(out) == before


def test_an_untagged_foreign_state_is_a_resume_error() -> None:
    """The training loop itself refuses a state of another optimizer (an older, untagged checkpoint)."""
    from zigprune.errors import ResumeError

    model = nn.Linear(4, 2)
    xs = TensorDataset(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, sgd, xs, epochs=1, batch_size=4, progress=False)
    state = Loop(model, sgd, xs, 1, 4).state_dict()
    state["optimizer"] = {"state": {}, "param_groups": []}
    with pytest.raises(ResumeError, match="does not fit this model and optimizer"):
        train(model, sgd, xs, epochs=1, batch_size=4, progress=False, resume=state)
    with pytest.raises(ResumeError, match="seed 0, not 3"):
        train(model, sgd, xs, epochs=1, batch_size=4, progress=False, resume=state, seed=3)


# -- 5. divergence ------------------------------------------------------------------------------------------


def test_divergence_stops_with_a_clear_error_and_an_unfinished_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "compress",
        *TINY,
        "--epochs",
        "2",
        "--no-baseline",
        "--no-latency",
        "--lr",
        "1e30",
        "--out",
        str(out),
    ]
    err = error_of(capsys, argv, 2)
    assert "training diverged at step" in err and "of 8 (loss is nan)" in err and "lower --lr" in err
    assert "start over with --force" in err
    assert (out / "run.json").is_file() and not (out / "metrics.json").exists()
    assert "unfinished run" in error_of(capsys, ["compress", "--out", str(out), "--no-progress"], 2)
    again = error_of(capsys, ["compress", "--out", str(out), "--resume", "--no-progress"], 2)
    assert again == err, "--resume keeps the saved --lr and meets the same divergence"


def test_the_api_raises_a_zigprune_error_on_divergence(tmp_path: Path) -> None:
    config = run.Config(
        subset=100, epochs=1, batch_size=50, lr=1e30, baseline=False, onnx=False, latency=False
    )
    with pytest.raises(DivergedError, match=r"diverged at step \d+ of 2") as info:
        run.compress(config, tmp_path / "run", **QUIET)
    assert isinstance(info.value, ZigpruneError) and info.value.step >= 1
    model = nn.Linear(4, 2)
    xs = TensorDataset(torch.randn(8, 4) * 1e30, torch.zeros(8, dtype=torch.long))
    with pytest.raises(
        DivergedError, match=r"training diverged at step \d+ \(loss is (nan|inf)\); lower the learning rate"
    ):
        train(model, torch.optim.SGD(model.parameters(), lr=1e30), xs, epochs=1, batch_size=4, progress=False)


# -- 6. a factory's run folder: absolute path in plan.json, named after the file ----------------------------

FACTORY = """
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
"""


def test_a_relative_factory_run_loads_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_net.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    argv = [
        "compress",
        "--model",
        "my_net.py:build",
        *TINY,
        "--no-baseline",
        "--no-latency",
        "--round-to",
        "1",
    ]
    assert main(argv) == 0
    folder = tmp_path / "runs" / "my_net-build-digits"
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["spec"]["text"] == f"{tmp_path / 'my_net.py'}:build"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    slim = zp.load(folder, trust_factory=True)
    assert isinstance(slim, nn.Module)
    assert json.loads((folder / "run.json").read_text())["model"] == f"{tmp_path / 'my_net.py'}:build"
    (folder / "metrics.json").unlink()  # an unfinished run, resumed from another folder
    assert main(["compress", "--out", str(folder), "--resume", "--trust-factory", "--no-progress"]) == 0
    assert (folder / "metrics.json").is_file()


# -- 7. documented times say what they include ------------------------------------------------------------


def test_documented_times_say_they_include_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "under a minute" not in help_text and "dense baseline" in help_text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "about 45 s" not in readme and "of which the dense baseline" in readme


# -- 8. the CLI's argument parsing lives in its own module --------------------------------------------------


def test_cli_modules_stay_under_the_size_limit() -> None:
    from zigprune.cli import args
    from zigprune.runs.options import positive_int

    modules = sorted((ROOT / "src" / "zigprune" / "cli").glob("*.py"))
    assert len(modules) >= 7, "one module per subcommand"
    for module in modules:
        assert len(module.read_text().splitlines()) <= 400, module
    assert positive_int("3") == 3 and args.shape("3x32x32") == (3, 32, 32)
