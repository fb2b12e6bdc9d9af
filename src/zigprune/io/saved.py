"""Save and load slim models without pickle: ``model.safetensors`` (the slim weights) + ``plan.json``.

``load`` rebuilds the original model from its spec, re-analyses it, cuts the recorded groups and
loads the weights strictly, so nothing a user loads is ever unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.analysis import reanalyze
from ..core.construct import build, outputs
from ..core.space import GroupSpace
from ..core.trace import Inputs, as_inputs
from ..errors import LoadError, ModelError, first_line
from ..models.spec import ModelSpec, resolve
from .atomic import atomic_write
from .inputs import make_inputs, matching
from .plan import (
    FORMAT,
    PLAN,
    WEIGHTS,
    build_plan,
    checksum,
    compare_checksums,
    dumps,
    fingerprint,
    read_plan,
    sha256_file,
)
from .trust import Factory, build_recorded


def _canonical_names(model: nn.Module) -> dict[int, str]:
    """The first name of every parameter and buffer (a tied weight is sliced under its first name)."""
    names: dict[int, str] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        names.setdefault(id(tensor), name)
    return names


def _check_slim(slim: nn.Module, space: GroupSpace, pruned: torch.Tensor) -> None:
    """``slim`` must have exactly the shapes that cutting ``pruned`` from the space's model gives."""
    kept: dict[str, list[tuple[int, int]]] = {}
    for s in space.slices:
        kept.setdefault(s.name, []).append((s.dim, int((~pruned[s.classes]).sum())))
    canonical = _canonical_names(space.model)
    full = space.model.state_dict(keep_vars=True)
    got = slim.state_dict(keep_vars=True)
    for name, tensor in full.items():
        shape = list(tensor.shape)
        for dim, size in kept.get(canonical.get(id(tensor), name), []):
            shape[dim] = size
        if name not in got or list(got[name].shape) != shape:
            found = tuple(got[name].shape) if name in got else "nothing"
            raise ModelError(
                f"the model to save is not the slim model of this space ({name} has shape {found}, "
                f"expected {tuple(shape)}); save the result of space.construct() before changing the weights"
            )
    if set(got) - set(full):
        raise ModelError(
            f"the model to save has tensors the analysed model lacks ({sorted(set(got) - set(full))[0]}); "
            "save the result of space.construct()"
        )


def _verify_spec(spec: ModelSpec, inputs: Inputs, expected: str, ties: list) -> None:
    """Build the model from ``spec``; its group structure (with the check's ties) must be the saved one."""
    if fingerprint(reanalyze(spec.build(), inputs, ties)) != expected:
        raise ModelError(
            f"model spec {spec.text!r} with {spec.kwargs} builds a model with a different group structure "
            "than the analysed one; pass the spec (and keyword arguments) the model was built from"
        )


def save(
    model: nn.Module,
    space: GroupSpace,
    spec: ModelSpec | str,
    directory: str | os.PathLike,
    *,
    example_inputs: Any = None,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
) -> Path:
    """Save the slim ``model`` (from ``space.construct()``) into ``directory`` as ``model.safetensors`` +
    ``plan.json``; the model is not changed. Arguments in the order of every zigprune writer (the model,
    what it needs, where it goes, as ``export_onnx`` and ``save_shared``); the order of earlier versions,
    ``directory`` first, still works with a ``FutureWarning``.

    ``spec`` names the factory the analysed model was built with (see :func:`zigprune.models.spec.resolve`);
    ``example_inputs`` (default: the space's) are recorded by shape, dtype and integer range so
    :func:`load` can re-analyse. With ``check``, the spec is built once to prove it gives the same group
    structure. Files are written atomically, ``plan.json`` last, so a folder with a plan is complete.
    """
    if isinstance(model, str | os.PathLike) and isinstance(space, nn.Module):
        warnings.warn(
            "zp.save takes (model, space, spec, directory) now, like export_onnx and save_shared; "
            "the directory-first order will be removed",
            FutureWarning,
            stacklevel=2,
        )
        model, space, spec, directory = space, spec, directory, model  # type: ignore[assignment]
    spec = (resolve(spec.text, **spec.kwargs) if isinstance(spec, ModelSpec) else resolve(spec)).absolute()
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelError(f"metadata must be JSON values (numbers, text, lists, dicts): {err}") from err
    inputs = space.inputs if example_inputs is None else as_inputs(example_inputs, space.model)
    pruned = space.pruned_classes(space.zero_groups())
    _check_slim(model, space, pruned)
    plan = build_plan(space, spec, inputs, pruned)
    plan["checksum"] = checksum(outputs(model, matching(make_inputs(plan["inputs"]), model)))
    if check:
        _verify_spec(spec, make_inputs(plan["inputs"]), plan["fingerprint"], plan["ties"])
    plan["metadata"] = metadata or {}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PLAN).unlink(missing_ok=True)
    atomic_write(directory / WEIGHTS, lambda temp: _save_weights(model, temp))
    plan["weights"] = {"file": WEIGHTS, "sha256": sha256_file(directory / WEIGHTS)}
    atomic_write(directory / PLAN, lambda temp: temp.write_text(dumps(plan), encoding="utf-8"))
    return directory


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    save_model(model, str(path), metadata={"format": FORMAT})


@contextlib.contextmanager
def _as_load_error(what: str, advice: str) -> Iterator[None]:
    """Turn any failure inside the block into a one-line :class:`LoadError`."""
    try:
        yield
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"{what} ({type(err).__name__}: {first_line(err)}); {advice}") from err


def _load_weights(slim: nn.Module, path: Path) -> None:
    """Load ``path`` strictly into ``slim``, keeping tied weights tied and the saved dtypes."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    lookup = slim.state_dict(keep_vars=True)
    loaded = {id(lookup[name]) for name in state if name in lookup}
    unexpected = sorted(set(state) - set(lookup))
    missing = sorted(n for n, t in lookup.items() if n not in state and id(t) not in loaded)
    if unexpected or missing:
        raise ValueError(f"missing tensors {missing[:3]}, unexpected tensors {unexpected[:3]}")
    for name, value in state.items():
        if lookup[name].shape != value.shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)} in the file, {tuple(lookup[name].shape)} in the model"
            )
    with torch.no_grad():
        for name, value in state.items():
            target = lookup[name]
            if target.dtype != value.dtype:
                target.data = target.data.to(value.dtype)
            target.copy_(value)


def load(
    directory: str | os.PathLike,
    *,
    check: bool = True,
    factory: Factory | None = None,
    trust_factory: bool = False,
) -> nn.Module:
    """Rebuild a slim model saved by :func:`save`, in eval mode, on the CPU.

    The original is rebuilt from the recorded spec and re-analysed on the recorded inputs; its group
    structure must match the saved fingerprint; the recorded groups are cut and the weights loaded
    strictly. With ``check`` the outputs must match the saved checksum. Every failure is a
    :class:`LoadError` saying what to do. Only code the caller names or allows runs: zoo models and
    Hugging Face folders always; a recorded factory only as ``factory`` (a callable or spec text) or
    with ``trust_factory=True`` (see :mod:`zigprune.io.trust`).
    """
    directory = Path(directory)
    plan = read_plan(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise LoadError(f"{str(directory)!r} has no {WEIGHTS}; save the model again with zp.save")
    if sha256_file(weights) != plan["weights"].get("sha256"):
        raise LoadError(
            f"{str(weights)!r} is corrupt or was changed after saving (its sha256 differs from {PLAN}); "
            "save the model again"
        )
    text = str(plan["spec"].get("text"))
    spec = ModelSpec(text, dict(plan["spec"].get("kwargs") or {}))
    with _as_load_error(f"cannot rebuild the model from spec {text!r}", "restore the factory or save again"):
        model = build_recorded(spec, factory, trust_factory)
    with _as_load_error(f"{PLAN} records inputs this zigprune cannot remake", "save the model again"):
        inputs = make_inputs(plan["inputs"])
    with _as_load_error(f"cannot re-analyse the model from spec {text!r}", "restore the factory"):
        space = reanalyze(model, inputs, [tuple(tie) for tie in plan.get("ties", [])])
    if fingerprint(space) != plan["fingerprint"] or space.num_classes != plan["num_classes"]:
        raise LoadError(
            f"the model built from spec {text!r} has a different group structure than the saved one "
            "(fingerprint mismatch): its factory changed; restore the original factory or save again"
        )
    pruned = torch.zeros(space.num_classes + 1, dtype=torch.bool)
    with _as_load_error(f"{PLAN} lists pruned channels that do not exist", "save the model again"):
        pruned[torch.as_tensor(plan["pruned_classes"], dtype=torch.long)] = True
    slim = build(space, pruned)
    with _as_load_error(f"{str(weights)!r} does not fit the rebuilt slim model", "save the model again"):
        _load_weights(slim, weights)
    if check:
        problem = compare_checksums(plan["checksum"], checksum(outputs(slim, matching(inputs, slim))))
        if problem:
            raise LoadError(
                f"the loaded model does not reproduce the saved outputs ({problem}, checksum mismatch); the "
                "factory's code or the library versions changed: restore them or save again"
            )
    return slim.eval()


__all__ = ["load", "read_plan", "save"]
