"""``plan.json``: what a saved run records (spec, inputs, group fingerprint, pruned channels, checksum).

``load`` trusts nothing in it: every field is type-checked by :func:`read_plan`, the fingerprint and
the output checksum are compared against what the rebuilt model gives.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._version import __version__
from ..core.trace import Inputs
from ..errors import LoadError
from .inputs import describe_inputs

if TYPE_CHECKING:
    from ..core.space import GroupSpace
    from ..models.spec import ModelSpec

FORMAT = "zigprune-plan"
VERSION = 1
PLAN = "plan.json"
WEIGHTS = "model.safetensors"
SAMPLES = 16
CHECKSUM_RTOL = 1e-4


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _widths(space: GroupSpace, pruned: torch.Tensor) -> list[dict[str, Any]]:
    """Width of every family of weight layers before and after, unprunable ones (e.g. the head) too."""
    cut = torch.bincount(space.class_family[pruned[:-1]], minlength=len(space.families))
    return [
        {"family": f.name, "before": f.width, "after": f.width - int(cut[f.index])}
        for f in space.families
        if f.modules
    ]


def build_plan(space: GroupSpace, spec: ModelSpec, inputs: Inputs, pruned: torch.Tensor) -> dict[str, Any]:
    groups = torch.nonzero(pruned[space.group_class]).reshape(-1)
    return {
        "format": FORMAT,
        "version": VERSION,
        "zigprune": __version__,
        "torch": torch.__version__,
        "spec": spec.to_json(),
        "inputs": describe_inputs(inputs),
        "num_groups": space.num_groups,
        "num_classes": space.num_classes,
        "fingerprint": fingerprint(space),
        "pruned_groups": groups.tolist(),
        "pruned_classes": torch.nonzero(pruned[:-1]).reshape(-1).tolist(),
        "widths": _widths(space, pruned),
        "ties": space.check.ties if space.check is not None else [],
        "params": {"before": space.params(), "after": space.params(groups)},
        "macs": {"before": space.macs(), "after": space.macs(groups)},
    }


def dumps(plan: dict[str, Any]) -> str:
    """JSON with one line per key, and per item for lists of records (widths, checksums)."""

    def value(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(item, dict) for item in v):
            return "[\n  " + ",\n  ".join(json.dumps(item) for item in v) + "\n ]"
        return json.dumps(v)

    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in plan.items()) + "\n}\n"


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
