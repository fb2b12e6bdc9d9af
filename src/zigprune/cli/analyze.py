"""``zigprune analyze``: a model's zero-invariant groups, and a random exact construction as proof."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import models
from ..core.analysis import analyze
from ..errors import ModelError
from ..measure.demo import random_construction
from ..models.spec import SPEC_FORMS, check_known, resolve
from ..runs.options import json_object, positive_int
from .args import shape


def add_analyze(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="print a model's zero-invariant groups: families, widths, MACs share, and why some cannot go",
        description="Trace a model, list its zero-invariant group families, and demonstrate an exact "
        "construction of a slim model from randomly zeroed groups.",
    )
    p.add_argument(
        "--model", default="resnet20", help=f"zoo name ({', '.join(models.names())}) or {SPEC_FORMS}"
    )
    p.add_argument(
        "--model-kwargs", type=json_object, default={}, help="JSON keyword arguments of the factory"
    )
    p.add_argument(
        "--input-shape", type=shape, help="shape of one input sample, e.g. 3,32,32 (factories need it)"
    )
    p.add_argument("--batch", type=positive_int, default=2, help="batch size of the example input")
    p.add_argument("--max-rows", type=int, default=40, help="families to list")
    p.add_argument("--no-check", action="store_true", help="skip the construction check during analysis")
    p.add_argument(
        "--demo-fraction", type=float, default=0.5, help="share of groups to zero in the demo (0: skip)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    spec = resolve(check_known(args.model), **args.model_kwargs)
    if spec.kind in ("file", "module") and args.input_shape is None:
        raise ModelError(
            f"{spec.text!r} is a factory: pass --input-shape, the shape of one sample (e.g. 3,32,32)"
        )
    model = spec.build().eval()
    inputs = spec.example_inputs(args.batch, args.input_shape)
    start = time.perf_counter()
    space = analyze(model, inputs, check=not args.no_check)
    seconds = time.perf_counter() - start
    print(space.summary(max_rows=args.max_rows))
    print(f"\nanalysed in {seconds:.2f} s")
    if space.num_groups and args.demo_fraction > 0:
        print("\n" + random_construction(model, inputs, args.demo_fraction, args.seed).describe())
    return 0
