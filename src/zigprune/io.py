"""Save and load slim models without pickle (safetensors + a JSON plan), and export them to ONNX.

A saved run is a folder with ``model.safetensors`` (the slim weights) and ``plan.json`` (how to rebuild
the slim structure: the model spec, how the example inputs were made, a fingerprint of the group
structure, the pruned groups, and an output checksum). ``load`` rebuilds the original model from its
spec, re-analyses it, cuts the recorded groups and loads the weights strictly, so nothing a user
loads is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .construct import _tensors, build, outputs
from .errors import ExportError, LoadError, ModelError
from .models.spec import ModelSpec, resolve
from .space import GroupSpace
from .trace import Inputs, as_inputs, eval_mode

log = logging.getLogger(__name__)

FORMAT = "zigprune-plan"
VERSION = 1
PLAN = "plan.json"
WEIGHTS = "model.safetensors"
SAMPLES = 16
CHECKSUM_RTOL = 1e-4


# -- example inputs as JSON --------------------------------------------------------------------------------


def _describe_value(value: Any) -> dict[str, Any]:
    """A tensor as shape/dtype (and value range for integers); JSON scalars as themselves."""
    if isinstance(value, torch.Tensor):
        item: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        if not value.is_floating_point() and not value.is_complex():
            empty = value.numel() == 0
            item["low"] = 0 if empty else int(value.min())
            item["high"] = 1 if empty else int(value.max()) + 1
        return item
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    raise ModelError(
        f"cannot record an example input of type {type(value).__name__}; pass tensors or plain numbers/text"
    )


def describe_inputs(inputs: Inputs) -> dict[str, Any]:
    """How to remake inputs like ``inputs``: kind (tensor/tuple/dict), and every argument's description."""
    tensor_kwargs = any(isinstance(v, torch.Tensor) for v in inputs.kwargs.values())
    single = len(inputs.args) == 1 and isinstance(inputs.args[0], torch.Tensor) and not tensor_kwargs
    kind = "tensor" if single else "dict" if not inputs.args else "tuple"
    return {
        "kind": kind,
        "args": [_describe_value(v) for v in inputs.args],
        "kwargs": {k: _describe_value(v) for k, v in inputs.kwargs.items()},
    }


def make_inputs(description: dict[str, Any]) -> Inputs:
    """Deterministic inputs from :func:`describe_inputs`' record: seeded normals, integers in their range."""
    generator = torch.Generator().manual_seed(0)

    def make(item: dict[str, Any]) -> Any:
        if "value" in item:
            return item["value"]
        dtype = getattr(torch, item["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {item['dtype']!r}")
        shape = tuple(int(n) for n in item["shape"])
        if dtype.is_floating_point:
            return torch.randn(shape, generator=generator).to(dtype)
        return torch.randint(int(item["low"]), int(item["high"]), shape, generator=generator).to(dtype)

    args = tuple(make(item) for item in description["args"])
    return Inputs(args, {str(k): make(item) for k, item in description["kwargs"].items()})


def _matching(inputs: Inputs, model: nn.Module) -> Inputs:
    """``inputs`` on the model's device, floating tensors in its floating dtype (e.g. a bfloat16 model)."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)

    def move(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        return v.to(device, dtype if dtype is not None and v.is_floating_point() else v.dtype)

    return Inputs(tuple(move(v) for v in inputs.args), {k: move(v) for k, v in inputs.kwargs.items()})


# -- fingerprints and checksums ----------------------------------------------------------------------------


def fingerprint(space: GroupSpace) -> str:
    """sha256 over the group structure: every slice's tensor, dim, role and channel classes; the heads."""
    digest = hashlib.sha256(f"classes {space.num_classes}\n".encode())

    def add(label: str, classes: torch.Tensor) -> None:
        digest.update(label.encode())
        digest.update(classes.to(torch.int64).cpu().contiguous().numpy().tobytes())

    for s in space.slices:
        add(f"\nslice {s.name} {s.dim} {int(s.producer)} ", s.classes)
    for h in space.heads:
        add(f"\nheads {h.module} q ", h.q_classes)
        add(" kv ", h.kv_classes)
    return "sha256:" + digest.hexdigest()


def checksum(values: list[torch.Tensor]) -> list[dict[str, Any]]:
    """A small summary of each output: shape, sum, sum of magnitudes, largest magnitude and a few values."""
    records = []
    for value in values:
        flat = value.detach().reshape(-1).double().cpu()
        picks = torch.linspace(0, max(flat.numel() - 1, 0), min(SAMPLES, flat.numel())).long()
        records.append({
            "shape": list(value.shape),
            "sum": float(flat.sum()),
            "abs_sum": float(flat.abs().sum()),
            "max_abs": float(flat.abs().max()) if flat.numel() else 0.0,
            "samples": [float(v) for v in flat[picks]],
        })  # fmt: skip
    return records


def _close(a: float, b: float, tolerance: float) -> bool:
    if a != a or b != b:  # NaN in either: both must be NaN
        return a != a and b != b
    return abs(a - b) <= tolerance


def compare_checksums(saved: list[dict[str, Any]], got: list[dict[str, Any]]) -> str | None:
    """Why two checksums differ beyond float noise (None if they agree)."""
    if len(saved) != len(got):
        return f"{len(got)} outputs instead of {len(saved)}"
    for i, (s, g) in enumerate(zip(saved, got)):
        if s["shape"] != g["shape"]:
            return f"output {i} has shape {tuple(g['shape'])} instead of {tuple(s['shape'])}"
        scale = CHECKSUM_RTOL * s["max_abs"] + 1e-6
        pairs = [("sum", s["sum"], g["sum"], CHECKSUM_RTOL * s["abs_sum"] + 1e-6)]
        pairs += [("abs_sum", s["abs_sum"], g["abs_sum"], CHECKSUM_RTOL * s["abs_sum"] + 1e-6)]
        pairs += [(f"value {j}", a, b, scale) for j, (a, b) in enumerate(zip(s["samples"], g["samples"]))]
        for what, a, b, tolerance in pairs:
            if not _close(a, b, tolerance):
                return f"output {i} {what} is {b:.6g} instead of {a:.6g}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


# -- save --------------------------------------------------------------------------------------------------


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


def _widths(space: GroupSpace, pruned: torch.Tensor) -> list[dict[str, Any]]:
    """Kept width of every family with prunable groups, before and after."""
    cut = torch.bincount(space.class_family[pruned[:-1]], minlength=len(space.families))
    return [
        {"family": f.name, "before": f.width, "after": f.width - int(cut[f.index])}
        for f in space.families
        if f.prunable
    ]


def _plan(space: GroupSpace, spec: ModelSpec, inputs: Inputs, pruned: torch.Tensor) -> dict[str, Any]:
    from . import __version__

    groups = torch.nonzero(pruned[space.group_class]).reshape(-1)
    return {
        "format": FORMAT,
        "version": VERSION,
        "zigprune": __version__,
        "torch": torch.__version__,
        "spec": spec.to_json(),
        "inputs": describe_inputs(inputs),
        "analysis": {"check": False},
        "num_groups": space.num_groups,
        "num_classes": space.num_classes,
        "fingerprint": fingerprint(space),
        "pruned_groups": groups.tolist(),
        "pruned_classes": torch.nonzero(pruned[:-1]).reshape(-1).tolist(),
        "widths": _widths(space, pruned),
        "params": {"before": space.params(), "after": space.params(groups)},
        "macs": {"before": space.macs(), "after": space.macs(groups)},
    }


def _verify_spec(spec: ModelSpec, inputs: Inputs, expected: str) -> None:
    """Build the model from ``spec`` and check its group structure is the one being saved."""
    from . import analyze

    if fingerprint(analyze(spec.build(), inputs, check=False)) != expected:
        raise ModelError(
            f"model spec {spec.text!r} with {spec.kwargs} builds a model with a different group structure "
            "than the analysed one; pass the spec (and keyword arguments) the model was built from"
        )


def save(
    directory: str | os.PathLike,
    model: nn.Module,
    space: GroupSpace,
    spec: ModelSpec | str,
    *,
    example_inputs: Any = None,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
) -> Path:
    """Save the slim ``model`` (from ``space.construct()``) as ``model.safetensors`` + ``plan.json``.

    ``spec`` names the factory the analysed model was built with (see :func:`zigprune.models.spec.resolve`);
    ``example_inputs`` (default: the space's) are recorded by shape, dtype and integer range so
    :func:`load` can re-analyse. With ``check``, the spec is built once to prove it gives the same group
    structure. Files are written atomically, ``plan.json`` last, so a folder with a plan is complete.
    """
    spec = resolve(spec.text, **spec.kwargs) if isinstance(spec, ModelSpec) else resolve(spec)
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelError(f"metadata must be JSON values (numbers, text, lists, dicts): {err}") from err
    inputs = space.inputs if example_inputs is None else as_inputs(example_inputs, space.model)
    pruned = space.pruned_classes(space.zero_groups())
    _check_slim(model, space, pruned)
    plan = _plan(space, spec, inputs, pruned)
    plan["checksum"] = checksum(outputs(model, _matching(make_inputs(plan["inputs"]), model)))
    if check:
        _verify_spec(spec, make_inputs(plan["inputs"]), plan["fingerprint"])
    plan["metadata"] = metadata or {}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PLAN).unlink(missing_ok=True)
    atomic_write(directory / WEIGHTS, lambda temp: _save_weights(model, temp))
    plan["weights"] = {"file": WEIGHTS, "sha256": _sha256(directory / WEIGHTS)}
    atomic_write(directory / PLAN, lambda temp: temp.write_text(_dumps(plan), encoding="utf-8"))
    return directory


def _dumps(plan: dict[str, Any]) -> str:
    """JSON with one line per key, and per item for lists of records (widths, checksums)."""

    def value(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(item, dict) for item in v):
            return "[\n  " + ",\n  ".join(json.dumps(item) for item in v) + "\n ]"
        return json.dumps(v)

    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in plan.items()) + "\n}\n"


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    save_model(model, str(path), metadata={"format": FORMAT})


# -- load --------------------------------------------------------------------------------------------------

_PLAN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "version": int,
    "spec": dict,
    "inputs": dict,
    "num_classes": int,
    "fingerprint": str,
    "pruned_classes": list,
    "checksum": list,
    "weights": dict,
    "metadata": dict,
}


def read_plan(directory: str | os.PathLike) -> dict[str, Any]:
    """The checked ``plan.json`` of a saved run; :class:`LoadError` if it is missing, corrupt or too new."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LoadError(f"no saved model at {str(directory)!r}: not a folder; pass the folder zp.save wrote")
    path = directory / PLAN
    if not path.is_file():
        raise LoadError(
            f"{str(directory)!r} has no {PLAN}: the save did not finish or this is not a zigprune save; "
            "save the model again with zp.save"
        )
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoadError(f"{str(path)!r} is corrupt ({err}); save the model again with zp.save") from err
    if not isinstance(plan, dict) or plan.get("format") != FORMAT:
        raise LoadError(
            f"{str(path)!r} is not a zigprune plan (format {FORMAT!r}); pass a folder zp.save wrote"
        )
    if not isinstance(plan.get("version"), int) or plan["version"] > VERSION:
        raise LoadError(
            f"{str(path)!r} has format version {plan.get('version')!r}, this zigprune reads up to {VERSION}; "
            "upgrade zigprune (pip install -U zigprune)"
        )
    for key, kind in _PLAN_FIELDS.items():
        if not isinstance(plan.get(key), kind):
            raise LoadError(
                f"{str(path)!r} is incomplete ({key!r} missing or malformed); save the model again"
            )
    return plan


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _as_load_error(what: str, advice: str) -> Iterator[None]:
    """Turn any failure inside the block into a one-line :class:`LoadError`."""
    try:
        yield
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"{what} ({type(err).__name__}: {_first_line(err)}); {advice}") from err


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


def load(directory: str | os.PathLike, *, check: bool = True) -> nn.Module:
    """Rebuild a slim model saved by :func:`save`, in eval mode, on the CPU.

    The original is rebuilt from the recorded spec and re-analysed on the recorded inputs; its group
    structure must match the saved fingerprint; the recorded groups are cut and the weights loaded
    strictly. With ``check`` the outputs must match the saved checksum. Every failure is a
    :class:`LoadError` saying what to do.
    """
    from . import analyze

    directory = Path(directory)
    plan = read_plan(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise LoadError(f"{str(directory)!r} has no {WEIGHTS}; save the model again with zp.save")
    if _sha256(weights) != plan["weights"].get("sha256"):
        raise LoadError(
            f"{str(weights)!r} is corrupt or was changed after saving (its sha256 differs from {PLAN}); "
            "save the model again"
        )
    text = str(plan["spec"].get("text"))
    with _as_load_error(f"cannot rebuild the model from spec {text!r}", "restore the factory or save again"):
        model = ModelSpec(text, dict(plan["spec"].get("kwargs") or {})).build()
    with _as_load_error(f"{PLAN} records inputs this zigprune cannot remake", "save the model again"):
        inputs = make_inputs(plan["inputs"])
    with _as_load_error(f"cannot re-analyse the model from spec {text!r}", "restore the factory"):
        space = analyze(model, inputs, check=False)
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
        problem = compare_checksums(plan["checksum"], checksum(outputs(slim, _matching(inputs, slim))))
        if problem:
            raise LoadError(
                f"the loaded model does not reproduce the saved outputs ({problem}, checksum mismatch); the "
                "factory's code or the library versions changed: restore them or save again"
            )
    return slim.eval()


# -- ONNX --------------------------------------------------------------------------------------------------


class _Positional(nn.Module):
    """Calls ``model`` with tensors as positional arguments (non-tensor inputs fixed), returning a tuple."""

    def __init__(self, model: nn.Module, inputs: Inputs) -> None:
        super().__init__()
        self.model = model
        self.args = inputs.args
        self.kwargs = inputs.kwargs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = iter(tensors)
        args = [next(given) if isinstance(v, torch.Tensor) else v for v in self.args]
        kwargs = {k: next(given) if isinstance(v, torch.Tensor) else v for k, v in self.kwargs.items()}
        return tuple(_tensors(self.model(*args, **kwargs)))


def _tensor_inputs(inputs: Inputs) -> tuple[list[str], list[torch.Tensor]]:
    """Names and values of the tensor inputs: ``input``/``input_i`` for positionals, keyword names."""
    args = [v for v in inputs.args if isinstance(v, torch.Tensor)]
    names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    kwargs = {k: v for k, v in inputs.kwargs.items() if isinstance(v, torch.Tensor)}
    return [*names, *kwargs], [*args, *kwargs.values()]


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs onnx and onnxruntime ({err}): pip install 'zigprune[onnx]'"
        ) from err
    return onnxruntime


def _export_dynamo(
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, dynamic: bool, outs: int
) -> None:
    batch = torch.export.Dim("batch")
    shapes = (tuple({0: batch} for _ in tensors),) if dynamic else None
    program = torch.onnx.export(
        wrapped,
        tuple(tensors),
        dynamo=True,
        dynamic_shapes=shapes,
        input_names=names,
        output_names=[f"output_{i}" for i in range(outs)],
        verbose=False,
    )
    program.save(str(path), external_data=False)


def _export_torchscript(
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, dynamic: bool, outs: int
) -> None:
    output_names = [f"output_{i}" for i in range(outs)]
    axes = {name: {0: "batch"} for name in [*names, *output_names]} if dynamic else None
    torch.onnx.export(
        wrapped, tuple(tensors), str(path), dynamo=False, input_names=names, output_names=output_names,
        dynamic_axes=axes,
    )  # fmt: skip


def _write_onnx(
    path: Path, wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], dynamic: bool, outs: int
) -> None:
    """Export with the dynamo exporter, or with ``dynamo=False`` if it fails (logged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _export_dynamo(wrapped, tensors, names, path, dynamic, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=True)")
            return
        except Exception as err:
            log.warning(
                "the dynamo ONNX exporter failed (%s: %s); exporting with torch.onnx.export(dynamo=False)",
                type(err).__name__, _first_line(err),
            )  # fmt: skip
        try:
            _export_torchscript(wrapped, tensors, names, path, dynamic, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=False)")
        except Exception as err:
            raise ExportError(
                f"torch.onnx.export failed with and without dynamo ({type(err).__name__}: "
                f"{_first_line(err)}); make the model traceable by torch.export (see zp.analyze's advice)"
            ) from err


def _grow_batch(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same inputs with one more sample (a copy of the first), to check the batch dim is dynamic."""
    return [torch.cat([t, t[:1]]) for t in tensors]


def _check_onnx(
    path: Path, wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], dynamic: bool, atol: float
) -> None:
    """Run the exported file in ONNX Runtime and compare with PyTorch at the example batch (and one more)."""
    session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [tensors, _grow_batch(tensors)] if dynamic else [tensors]
    for feed in feeds:
        with torch.no_grad():
            reference = wrapped(*feed)
        got = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, feed)})
        if len(got) != len(reference):
            raise ExportError(
                f"ONNX model gives {len(got)} outputs instead of {len(reference)}; report the model"
            )
        for i, (r, g) in enumerate(zip(reference, got)):
            g = torch.from_numpy(g)
            if tuple(g.shape) != tuple(r.shape):
                raise ExportError(
                    f"ONNX output {i} has shape {tuple(g.shape)} instead of {tuple(r.shape)} at batch "
                    f"{feed[0].shape[0]}; export with dynamic_batch=False or fix batch-dependent code"
                )
            r = r.detach().cpu().double()
            diff = (g.double() - r).abs().max().item() if r.numel() else 0.0
            scale = r.abs().max().item() if r.numel() else 0.0
            if not diff <= atol * scale + 1e-6:
                raise ExportError(
                    f"ONNX Runtime output {i} differs from PyTorch by {diff:.3g} (scale {scale:.3g}, atol "
                    f"{atol:g}) at batch {feed[0].shape[0]}; report the model or raise atol"
                )


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` to an ONNX file (dim 0 of every tensor input as a dynamic batch), atomically.

    Tries ``torch.onnx.export``'s dynamo exporter first, then ``dynamo=False`` (logged). Tensor inputs
    are named ``input`` (``input_i``) or by keyword, outputs ``output_i``. With ``check`` the file is run
    in ONNX Runtime at the example batch (and one more) and must match PyTorch within ``atol`` × the
    output scale, or :class:`ExportError` is raised and no file is written.
    """
    _onnxruntime()
    path = Path(path)
    inputs = as_inputs(example_inputs, model)
    names, tensors = _tensor_inputs(inputs)
    if not tensors:
        raise ExportError("ONNX export needs at least one tensor input; pass the example inputs as tensors")
    if dynamic_batch and any(t.dim() == 0 for t in tensors):
        raise ExportError("a scalar input has no batch dimension; export with dynamic_batch=False")
    if dynamic_batch and tensors[0].shape[0] == 1:
        tensors = _grow_batch(tensors)  # torch.export treats a size-1 dim as static
    wrapped = _Positional(model, inputs)
    with eval_mode(wrapped), torch.no_grad():
        outs = len(wrapped(*tensors))

        def write(temp: Path) -> None:
            _write_onnx(temp, wrapped, tensors, names, dynamic_batch, outs)
            if check:
                _check_onnx(temp, wrapped, tensors, names, dynamic_batch, atol)

        atomic_write(path, write)
    return path


__all__ = ["export_onnx", "load", "read_plan", "save"]
