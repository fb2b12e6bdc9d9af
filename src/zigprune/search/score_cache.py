"""Group scores kept on disk, so a second search of the same model on the same calibration data
(another budget, another strategy, another command) does not score the groups again.

A file per scoring in the cache folder (:func:`zigprune.measure.timing_cache.cache_dir`), named by a
sha256 over what the scores depend on: the group structure, every weight and buffer of the model, the
calibration samples, the method and its damping, and the torch version. Written atomically as a
pickle-free checkpoint; a damaged file is scored again (with a warning) and rewritten.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.space import GroupSpace
from ..errors import LoadError
from ..io.plan import fingerprint
from ..measure.timing_cache import cache_dir
from ..posttrain.prune import group_scores
from ..training.checkpoint import load, save


def scores_key(
    space: GroupSpace, calibration: list[Any] | None, method: str, score_damp: float | None
) -> str | None:
    """The sha256 naming these scores, or None when a calibration sample is of a kind it cannot hash."""
    head = f"{method} {score_damp} torch {torch.__version__}\n{fingerprint(space)}\n"
    digest = hashlib.sha256(head.encode())
    for name, tensor in space.model.state_dict().items():
        _tensor(digest, name, tensor)
    try:
        _data(digest, calibration)
    except TypeError:
        return None
    return digest.hexdigest()


def cached_scores(
    space: GroupSpace,
    calibration: list[Any] | None,
    method: str = "obs",
    *,
    score_damp: float | None = None,
    progress: bool = True,
    folder: str | Path | None = None,
) -> tuple[torch.Tensor, Path | None]:
    """:func:`group_scores`, read from ``folder`` (the cache folder by default) when this model, data
    and method were scored before, else scored and written there. The scores and the file they were
    read from (None when they were scored now)."""
    key = scores_key(space, calibration, method, score_damp)
    path = Path(folder or cache_dir() / "scores") / f"{method}-{key}.safetensors" if key else None
    if path is not None and path.is_file():
        try:
            scores = load(path)["scores"]
            if not isinstance(scores, torch.Tensor) or scores.shape != (space.num_groups,):
                raise LoadError(f"{path} holds scores of another shape")
            return scores, path
        except (LoadError, KeyError, TypeError) as err:
            warnings.warn(f"scoring again: the cached scores could not be read ({err})", stacklevel=2)
    scores = group_scores(space, calibration, method, score_damp=score_damp, progress=progress)
    if path is not None:
        try:
            save(path, {"scores": scores, "method": method})
        except OSError as err:
            warnings.warn(f"could not keep the scores in {path} ({err})", stacklevel=2)
    return scores, None


def _tensor(digest: Any, label: str, tensor: torch.Tensor) -> None:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"\n{label} {flat.dtype} {tuple(tensor.shape)} ".encode())
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())


def _data(digest: Any, value: Any, label: str = "") -> None:
    """Hash a calibration structure of tensors, mappings, sequences and plain values; TypeError on any
    other kind of value (its content cannot be told apart from another's)."""
    if isinstance(value, torch.Tensor):
        _tensor(digest, label, value)
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            _data(digest, value[key], f"{label}.{key}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"\n{label} [{len(value)}]".encode())
        for i, item in enumerate(value):
            _data(digest, item, f"{label}.{i}")
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(f"\n{label} {value!r}".encode())
    else:
        raise TypeError(f"cannot hash a {type(value).__name__}")
