"""A slim Hugging Face model as a standard ``save_pretrained`` folder that plain ``from_pretrained`` loads.

Its config is rewritten to the widths pruning left (``intermediate_size``, the hidden size, and the
head counts where the config states the head size), then checked by building the model class from
that config (on the meta device, no memory) and comparing every weight's shape with the slim
model's. A config holds one width per kind of layer, so the widths must be the same in every layer
(``Limits(uniform=True)``, ``--uniform``); a model whose config derives the head size from
``hidden_size / num_attention_heads`` (BERT) cannot describe fewer heads, so leave heads whole there
(``--leave '*.attention.*'``). Models no config describes load with ``zp.load`` from the run folder.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, first_line

SIZE_KEYS = (
    "intermediate_size", "ffn_dim", "n_inner", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff",
    "hidden_size", "n_embd", "d_model", "dim", "hidden_dim",
)  # fmt: skip
HEAD_KEYS = (
    "num_attention_heads", "num_key_value_heads", "n_head", "num_heads", "encoder_attention_heads",
    "decoder_attention_heads",
)  # fmt: skip


class ConfigShapeError(ModelError):
    """The slim model's widths cannot be written in its Hugging Face config (see the module docstring)."""


@dataclass(frozen=True)
class _Change:
    """One weight axis pruning narrowed: the parameter, the axis, and its size before and after."""

    name: str
    axis: int
    dense: int
    slim: int


def slim_config(slim: nn.Module) -> Any:
    """A copy of ``slim.config`` with the widths ``slim`` has, checked to build exactly its shapes.

    Each size and head-count setting is tried in turn at the width its narrowed axes show, and kept
    when the class built from it matches more of ``slim``'s shapes. Raises ``ConfigShapeError`` naming
    the setting whose layers kept different widths, or the first weight no rewrite explains.
    """
    config = getattr(slim, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ConfigShapeError(
            f"{type(slim).__name__} has no Hugging Face config to rewrite; load it with zp.load"
        )
    got = _shapes(slim)
    new, wrong = copy.deepcopy(config), _mismatches(slim, config, got)
    head_size = getattr(config, "head_dim", None)
    uneven = []
    for key, unit in [(k, head_size) for k in HEAD_KEYS if head_size] + [(k, 1) for k in SIZE_KEYS]:
        value = getattr(new, key, None) if hasattr(new, key) else False
        if value is None and wrong and unit == 1:  # a width the model derives (GPT-2's n_inner: 4 x n_embd)
            value = _derived(wrong)
        if not wrong or isinstance(value, bool) or not isinstance(value, int) or value < 1:
            continue
        widths = {c.slim for c in wrong if c.dense == value * unit and c.slim % unit == 0}
        if len(widths) > 1:
            uneven.append(f"{key} ({value * unit} before, {', '.join(map(str, sorted(widths)))} after)")
        if len(widths) == 1:
            trial = copy.deepcopy(new)
            setattr(trial, key, widths.pop() // unit)
            left = _mismatches(slim, trial, got)
            if len(left) < len(wrong):
                new, wrong = trial, left
    if wrong:
        raise _undescribed(wrong[0], uneven)
    _validate(new)
    return new


def _derived(wrong: list[_Change]) -> int | None:
    """The width a setting left None may stand for: the one dense width of the narrowed axes (None when
    they had several); the setting is kept only if writing their slim width there explains them."""
    dense = {c.dense for c in wrong}
    if len(dense) != 1:
        return None
    return next(iter(dense))


def _validate(config: Any) -> None:
    """``ConfigShapeError`` when transformers' own checks refuse the rewritten config (some configs
    require, say, the hidden size to be a multiple of the head count)."""
    try:
        if hasattr(config, "validate"):
            config.validate()
    except Exception as err:
        cause = getattr(err, "__cause__", None) or err
        raise ConfigShapeError(
            f"transformers refuses the rewritten config ({first_line(cause)}); prune to widths it allows "
            "(e.g. --round-to, or leave the heads whole), or load the run with zp.load"
        ) from None


def save_pretrained(
    slim: nn.Module,
    folder: str | os.PathLike,
    *,
    tokenizer: Any = None,
    source: str | os.PathLike | None = None,
) -> Path:
    """Save ``slim`` with its rewritten config (``slim_config``) as a ``from_pretrained`` folder, and the
    ``tokenizer`` beside it if given; written to a temporary folder first, then moved into place, with
    the permissions of any new file (the umask's). A ``source`` folder laid out for sentence-transformers
    (``modules.json``) lends its pooling and normalisation modules, so ``SentenceTransformer(folder)``
    embeds as the source model did."""
    config = slim_config(slim)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    before = slim.config
    try:
        slim.config = config
        slim.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if source is not None:
            _sentence_transformer_files(Path(source), staging)
        _usual_permissions(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        slim.config = before
        shutil.rmtree(staging, ignore_errors=True)
    return folder


SENTENCE_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


def _sentence_transformer_files(source: Path, folder: Path) -> None:
    """sentence-transformers' module list and settings, and each module's folder (pooling, normalise;
    an empty one for a module that has no files), copied from ``source`` when it has them."""
    modules = source / "modules.json"
    if not modules.is_file():
        return
    for name in SENTENCE_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    for module in json.loads(modules.read_text(encoding="utf-8")):
        path = str(module.get("path") or "")
        if not path or Path(path).is_absolute() or ".." in Path(path).parts:
            continue
        if (source / path).is_dir():
            shutil.copytree(source / path, folder / path, dirs_exist_ok=True)
        else:
            (folder / path).mkdir(parents=True, exist_ok=True)


def _usual_permissions(folder: Path) -> None:
    """Folders and files as the umask makes new ones (a temporary folder is private: 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _mismatches(slim: nn.Module, config: Any, got: dict[str, tuple[int, ...]]) -> list[_Change]:
    """Every weight axis where the class built from ``config`` differs from ``got`` (the slim model's)."""
    built = _shapes(_build(slim, config))
    missing = sorted(set(got) ^ set(built))
    if missing:
        raise ConfigShapeError(
            f"the model built from its config has other weights than the slim one: {missing[0]}"
        )
    return [_Change(k, a, d, s) for k, shape in built.items()
            for a, (d, s) in enumerate(zip(shape, got[k])) if d != s]  # fmt: skip


def _undescribed(first: _Change, uneven: list[str]) -> ConfigShapeError:
    """The error of a slim model its config cannot describe, saying what to do instead."""
    if uneven:
        return ConfigShapeError(
            f"layers kept different widths where the config has one: {'; '.join(uneven)}; prune with "
            "uniform widths (--uniform, Limits(uniform=True)), or load the run with zp.load"
        )
    return ConfigShapeError(
        f"the config cannot describe the slim model: axis {first.axis} of {first.name} is {first.slim} wide, "
        f"and no width setting of the config makes it so; where the config derives the head size from the "
        "hidden size (BERT), leave heads whole (--leave '*.attention.*'); or load the run with zp.load"
    )


def _build(slim: nn.Module, config: Any) -> nn.Module:
    """``slim``'s class built from ``config`` on the meta device (shapes only, no memory)."""
    try:
        with torch.device("meta"):
            return type(slim)(copy.deepcopy(config))
    except Exception as err:
        raise ConfigShapeError(
            f"{type(slim).__name__} cannot be built from the rewritten config ({type(err).__name__}: {err})"
        ) from None


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
