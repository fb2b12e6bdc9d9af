"""How much of a timm model zigprune can prune, exactly: groups found, kept by the check, removed.

For each model (``timm.create_model(name, pretrained=False)``, random weights, eval mode, a 2x3x64x64
input, or the model's own input size where 64 does not fit; seed 0) this measures, in one process:

* ``groups``: the zero-invariant groups the rules find (``zp.analyze(..., check=False)``);
* ``kept``: the groups left after analyze's construction check (``zp.analyze(...)``); ``groups -
  kept`` are the groups the check had to take away, i.e. rules that found a group construction
  cannot remove exactly (each one is a coverage hole to fix);
* ``params_removed``: the share of parameters gone after zeroing a random half of the kept groups
  (fixed seed) and ``space.construct()``, which checks that the slim model reproduces the outputs;
* the analysis time (with the check), and any error (analysis or construction) with its first line.

timm is an optional dependency: it is imported only here, and needs a torchvision that imports
beside the installed torch. Run from the repository root::

    PYTHONPATH=src python benchmarks/timm_coverage.py --quick                 # two small models
    PYTHONPATH=src python benchmarks/timm_coverage.py res2net50_14w_8s cspresnet50 --out /tmp/cov

It prints a Markdown table and, with ``--out``, writes ``timm_coverage.json`` there. The exit status
is 2 when timm cannot be imported, 1 when any model raised, else 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zigprune as zp

QUICK = ("vit_tiny_patch16_224", "resnetblur18")
DEFAULT = (
    "gemma4_vit_167m", "mambaout_femto", "gmlp_s16_224", "mobilenetv5_300m", "res2net50_14w_8s",
    "cspresnet50", "efficientvim_m1", "inception_next_atto", "skresnet18", "resnetblur18",
    "vit_tiny_patch16_224",
)  # fmt: skip
SIZE = 64


def import_timm() -> Any:
    """timm, or None with a message saying why it cannot be used."""
    try:
        import timm
    except Exception as err:
        print(
            f"timm_coverage needs timm (pip install timm) and a torchvision that imports beside this torch "
            f"({type(err).__name__}: {err})",
            file=sys.stderr,
        )
        return None
    return timm


def build(timm: Any, name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model with random weights and an input it runs on: 64x64 where it fits, else its own size."""
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, img_size=SIZE).eval()
        if _runs(model, SIZE):
            return model, _input(SIZE)
    except TypeError:
        pass
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    size = SIZE if _runs(model, SIZE) else model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    return model, _input(size)


def _input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def _runs(model: nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            model(_input(size))
    except Exception:
        return False
    return True


def measure(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Groups found and kept, the analysis time, and the share of parameters a half cut removes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = zp.analyze(copy.deepcopy(model), x, check=False).num_groups
        start = time.perf_counter()
        space = zp.analyze(model, x)
        seconds = time.perf_counter() - start
    row: dict[str, Any] = {"input": list(x.shape), "groups": found, "kept": space.num_groups}
    row["analyze_s"] = round(seconds, 1)
    full = sum(p.numel() for p in model.parameters())
    if space.num_groups:
        order = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(0))
        space.zero_(order[: max(1, space.num_groups // 2)])
        slim = space.construct()
        row["params_removed"] = round(1 - sum(p.numel() for p in slim.parameters()) / full, 3)
    else:
        row["params_removed"] = 0.0
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | groups | kept by the check | params removed (half cut) | analyze s | error |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        removed = f"{100 * r['params_removed']:.1f}%" if "params_removed" in r else ""
        lines.append(
            f"| {r['model']} | {r.get('groups', '')} | {r.get('kept', '')} | {removed} | "
            f"{r.get('analyze_s', '')} | {r.get('error', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"timm model names (default: {', '.join(DEFAULT)})")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--out", type=Path, help="folder for timm_coverage.json")
    args = parser.parse_args(argv)
    timm = import_timm()
    if timm is None:
        return 2
    names = args.models or (QUICK if args.quick else DEFAULT)
    rows = []
    for name in names:
        row: dict[str, Any] = {"model": name}
        try:
            row.update(measure(*build(timm, name)))
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "timm_coverage.json").write_text(json.dumps({"models": rows}, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
