"""How much of a timm model zigprune can prune, exactly: groups found, kept by the check, removed.

For each model (``timm.create_model(name, pretrained=False)``, random weights, eval mode, a 2x3x64x64
input, or the model's own input size where 64 does not fit; seed 0) this measures, in one process:

* ``groups``: the zero-invariant groups the rules find (``zp.analyze(..., check=False)``);
* ``kept``: the groups left after analyze's construction check (``zp.analyze(...)``); ``groups -
  kept`` are the groups the check had to take away, i.e. rules that found a group construction
  cannot remove exactly (each one is a coverage hole to fix);
* ``params_removed``: the share of parameters gone after zeroing a random half of the kept groups
  (fixed seed) and ``space.construct()``, which checks that the slim model reproduces the outputs;
* the time of ``torch.export`` alone, of ``zp.analyze`` with the check off and on, and their ratios to
  the export (the construction check's cost: issue 27's goal is analyze / export within 2x with the
  check on), each the median of ``--rounds`` rounds timed in turn;
* any error (analysis or construction) with its first line.

timm is an optional dependency: it is imported only here, and needs a torchvision that imports
beside the installed torch. timm's model code does not use torchvision, only its data transforms do;
``--without-torchvision`` puts a placeholder module in its place before importing timm, for a
machine whose torchvision wheel does not load (this project's: CPU torch, CUDA-linked torchvision).
Run from the repository root::

    PYTHONPATH=src python benchmarks/timm_coverage.py --quick                 # two small models
    PYTHONPATH=src python benchmarks/timm_coverage.py res2net50_14w_8s cspresnet50 --out /tmp/cov

It prints a Markdown table and, with ``--out``, writes ``timm_coverage.json`` and ``.md`` there. The
exit status is 2 when timm cannot be imported, 1 when any model raised, else 0.
"""

from __future__ import annotations

import argparse
import copy
import enum
import importlib.abc
import importlib.machinery
import json
import statistics
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zigprune as zp
from zigprune.core.trace import as_inputs, export

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info

QUICK = ("vit_tiny_patch16_224", "resnetblur18")
DEFAULT = (
    "gemma4_vit_167m", "mambaout_femto", "gmlp_s16_224", "mobilenetv5_300m", "res2net50_14w_8s",
    "cspresnet50", "efficientvim_m1", "inception_next_atto", "skresnet18", "resnetblur18",
    "vit_tiny_patch16_224", "resnet50", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_100",
    "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "hiera_tiny_224", "nest_tiny",
    "tiny_vit_5m_224", "levit_128s", "mobilevit_xxs", "regnetx_002", "poolformer_s12",
)  # fmt: skip
SIZE = 64


def import_timm(without_torchvision: bool = False) -> Any:
    """timm, or None with a message saying why it cannot be used."""
    if without_torchvision:
        _placeholder("torchvision")
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


class _Placeholder(types.ModuleType):
    """A module whose every attribute is another placeholder (and a class base, and callable)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return enum.Enum(name, "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS NEAREST_EXACT")
        return _placeholder(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of ``root`` and its submodules get placeholders."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == self.root or name.startswith(self.root + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> Any:
        return _placeholder(spec.name)

    def exec_module(self, module: Any) -> None:
        module.__path__ = []


def _placeholder(name: str) -> _Placeholder:
    if not any(isinstance(f, _Finder) and f.root == name.split(".")[0] for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(name.split(".")[0]))
    module = sys.modules.setdefault(name, _Placeholder(name))
    module.__path__ = []
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(_placeholder(parent), child, module)
    return module


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


def measure(model: nn.Module, x: torch.Tensor, rounds: int = 3) -> dict[str, Any]:
    """Groups found and kept, the cost of tracing and analysing, and the share of parameters a half
    cut removes."""
    calls = {
        "export": lambda: export(copy.deepcopy(model), as_inputs(x)),
        "check_off": lambda: zp.analyze(copy.deepcopy(model), x, check=False),
        "check_on": lambda: zp.analyze(copy.deepcopy(model), x),
    }
    times: dict[str, list[float]] = {key: [] for key in calls}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            for key, call in calls.items():
                start = time.perf_counter()
                result = call()
                times[key].append(time.perf_counter() - start)
                if key == "check_off":
                    found = result.num_groups
        space = zp.analyze(model, x)
    row: dict[str, Any] = {"input": list(x.shape), "groups": found, "kept": space.num_groups}
    row |= {f"{key}_s": round(statistics.median(t), 3) for key, t in times.items()}
    for key in ("check_off", "check_on"):
        row[f"{key}_ratio"] = round(statistics.median(a / e for a, e in zip(times[key], times["export"])), 2)
    row["dropped"] = len(space.check.dropped) if space.check else 0
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
        "| model | input | groups | kept by the check | families dropped | params removed (half cut) "
        "| export s | analyze / export, check off | check on | error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        removed = f"{100 * r['params_removed']:.1f}%" if "params_removed" in r else ""
        size = "x".join(map(str, r["input"][2:])) if "input" in r else ""
        ratios = [f"{r[k]:.2f}" if k in r else "" for k in ("check_off_ratio", "check_on_ratio")]
        counts = " | ".join(str(r.get(k, "")) for k in ("groups", "kept", "dropped"))
        lines.append(
            f"| {r['model']} | {size} | {counts} | {removed} | {r.get('export_s', '')} | {ratios[0]} | "
            f"{ratios[1]} | {r.get('error', '')} |"
        )
    return "\n".join(lines)


def goal(rows: list[dict[str, Any]]) -> str:
    ratios = [r["check_on_ratio"] for r in rows if "check_on_ratio" in r]
    over = [r["model"] for r in rows if r.get("check_on_ratio", 0) > 2]
    text = (
        f"analyze / export with the check on: median {statistics.median(ratios):.2f}, at most "
        f"{max(ratios):.2f}; above 2x: {', '.join(over) or 'none'}"
    )
    return f"{text}: {'met' if not over else '**not met**'} (goal: within 2x on every model)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"timm model names (default: {', '.join(DEFAULT)})")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--out", type=Path, help="folder for timm_coverage.json and .md")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per model (median)")
    parser.add_argument(
        "--without-torchvision", action="store_true", help="a placeholder module stands in for torchvision"
    )
    args = parser.parse_args(argv)
    timm = import_timm(args.without_torchvision)
    if timm is None:
        return 2
    names = args.models or (QUICK if args.quick else DEFAULT)
    rows = []
    for name in names:
        row: dict[str, Any] = {"model": name}
        try:
            row.update(measure(*build(timm, name), rounds=args.rounds))
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    text = table(rows)
    if any("check_on_ratio" in r for r in rows):
        text += "\n\n" + goal(rows)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {"command": command_line(__file__, sys.argv[1:] if argv is None else argv),
                  "machine": machine_info(), "timm": timm.__version__, "models": rows}  # fmt: skip
        (args.out / "timm_coverage.json").write_text(json.dumps(report, indent=1))
        head = f"# timm coverage\n\nCommand: `{report['command']}`\n\n"
        head += f"Machine: {report['machine']['summary']}, timm {timm.__version__}.\n\n"
        (args.out / "timm_coverage.md").write_text(head + text + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
