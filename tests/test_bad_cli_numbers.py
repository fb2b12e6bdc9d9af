"""Bad numbers and odd states on the command line: exit 2 with one line naming the flag, nothing saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from zigprune.cli import main
from zigprune.errors import ConfigError, RunDirError
from zigprune.runs import Config, compress


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-2"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--momentum", "1.5"], "momentum"),
        (["--round-to", "0"], "--round-to"),
        (["--subset", "0"], "--subset"),
        (["--threads", "-1"], "--threads"),
    ],
)
def test_compress_refuses_bad_numbers(
    flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert exit_code(["compress", "--out", str(out), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir()), "nothing may be saved for a bad setting"


def exit_code(argv: list[str]) -> int:
    """The CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def test_bad_numbers_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--batch-size", "0"], ["--epochs", "0"], ["--lr", "-1"]):
        assert main(["compress", "--out", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("zigprune: "), err


def test_out_naming_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["compress", "--out", str(target), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    with pytest.raises(RunDirError):
        compress(Config(), target)


@pytest.mark.parametrize(
    "argv", [["analyze", "digits_cnn", "--batch", "0"], ["eval", "x", "--batch-size", "0"]]
)
def test_other_commands_refuse_zero_sizes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_config_checks_its_numbers_for_api_users() -> None:
    with pytest.raises(ConfigError, match="--epochs"):
        Config(epochs=0)
    with pytest.raises(ConfigError, match="--batch-size"):
        Config(batch_size=0)
    with pytest.raises(ConfigError, match="--threads"):
        compress(Config(), "unused", threads=0)
