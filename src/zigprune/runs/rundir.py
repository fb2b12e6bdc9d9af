"""The run-directory protocol: which files a run writes, when a folder may be overwritten or resumed.

A run directory holds ``run.json`` (the settings), ``checkpoint.safetensors`` while training,
``model.safetensors`` + ``plan.json`` (``zp.save``), ``model.onnx``, ``history.json``, ``report.md``
with plots, and ``metrics.json``, written last: a run is complete exactly when it has ``metrics.json``.
A folder with ``run.json`` and no ``metrics.json`` is an unfinished run: it is overwritten only with
``--force``, and ``--resume`` continues it from its checkpoints, or from the first step with the
saved settings when it stopped before the first checkpoint was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from ..io.atomic import atomic_write
from ..models.spec import kind_of
from .config import Config

CONFIG, CHECKPOINT, BASELINE = "run.json", "checkpoint.safetensors", "baseline.safetensors"
HISTORY, METRICS, ONNX, DENSE = "history.json", "metrics.json", "model.onnx", "dense.safetensors"
REPORT, PLOT_FILES = "report.md", ("training.png", "sparsity.png", "widths.png", "costs.png")
OUTPUTS = (METRICS, HISTORY, ONNX, DENSE, "plan.json", "model.safetensors", CHECKPOINT, BASELINE, CONFIG)


def check_dir(out: Path, *, resume: bool, force: bool, resumable: bool = True) -> Config | None:
    """Check ``out`` against ``resume``/``force``; on resume return the saved config. Changes nothing.

    ``resumable``: whether the command can continue an unfinished run (``compress`` can, ``prune``
    starts over), so the advice for a folder holding one names a flag the command has."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a folder; pass --out a folder for the run")
    complete = (out / METRICS).is_file()
    partial = any((out / name).is_file() for name in (CONFIG, CHECKPOINT))
    if resume and force:
        raise RunDirError("--resume continues a run and --force starts it over; pass one of them")
    if resume:
        if complete:
            raise RunDirError(f"{out} holds a complete run; nothing to resume (pass --force to run it again)")
        if not (out / CONFIG).is_file():
            raise RunDirError(f"{out} has no checkpoint to resume from (no {CONFIG}); run without --resume")
        try:
            return Config.from_dict(json.loads((out / CONFIG).read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise RunDirError(f"{out / CONFIG} is corrupt ({err}); start over with --force") from None
    if (complete or partial) and not force:
        unfinished = "an unfinished run (pass --resume to continue it)" if resumable else "an unfinished run"
        state = "a complete run" if complete else unfinished
        raise RunDirError(
            f"{out} holds {state}; pass --force to overwrite it or --out to pick another folder"
        )
    return None


def check_resume(out: Path, config: Config, given: Iterable[str], *, force: bool = False) -> Config:
    """The config saved in ``out`` for ``--resume``; a ``RunDirError`` naming each option in ``given`` (the
    ones the user set) whose value differs from the saved run's, since a resumed run keeps its own."""
    saved = check_dir(out, resume=True, force=force)
    assert saved is not None
    changed = [f"--{k.replace('_', '-')} (saved: {getattr(saved, k)!r})" for k in given
               if getattr(saved, k) != getattr(config, k)]  # fmt: skip
    if changed:
        raise RunDirError(f"--resume continues the run saved in {out}; drop {', '.join(changed)}")
    return saved


def start_dir(out: Path, config: Config) -> None:
    """Remove a previous run's files from ``out`` (nothing else) and record ``config`` as ``run.json``."""
    for name in (*OUTPUTS, REPORT, *PLOT_FILES):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, asdict(config))


def write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=1, allow_nan=False)
    atomic_write(path, lambda temp: temp.write_text(text + "\n", encoding="utf-8"))


def check_named(model: str, out: Path) -> None:
    """A resumed run's factory (code the folder names) must be named by the caller: refuse otherwise."""
    if kind_of(model) in ("file", "module"):
        raise RunDirError(
            f"{out} names the factory {model!r}; --resume runs it only if you name it "
            f"(--model {model}) or trust the folder (--trust-factory)"
        )
