"""The argparse pieces of the ``zigprune`` command line: value types and the compress sub-parser."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Callable
from typing import Any

from . import compress as run
from . import data
from .compress.config import VARIANTS
from .core.selection import TARGET_HELP

SPEC_FORMS = "path/to/file.py:factory, package.module:factory or hf:PATH"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, not {value}")
    return value


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object, such as a factory's keyword arguments."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"width\": 32}'")
    return value


def shape(text: str) -> tuple[int, ...]:
    """An argparse type: a shape such as ``3,32,32`` or ``3x32x32``."""
    try:
        return tuple(int(n) for n in text.lower().replace("x", ",").split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,32,32") from None


def wrap(text: str) -> str:
    """``text`` filled to the terminal's width (the compress help keeps its own line breaks)."""
    return textwrap.fill(text, width=max(40, min(100, shutil.get_terminal_size().columns - 2)))


def add_measure_flags(group: Any) -> None:
    """``--no-onnx``, ``--no-latency`` and ``--latency-seconds``: what a run measures after it builds the
    slim model (compress and prune alike)."""
    group.add_argument("--no-onnx", dest="onnx", action="store_const", const=False, help="skip model.onnx")
    group.add_argument("--no-latency", dest="latency", action="store_const", const=False, help="skip timing")
    group.add_argument(
        "--latency-seconds", metavar="S", type=float, help="time each model at least S per batch size (0.5)"
    )


def add_deploy_flags(group: Any) -> None:
    """``--int8`` and ``--share-bits``: what ships besides the fp32 slim model (compress and export)."""
    group.add_argument(
        "--int8",
        action="store_const",
        const=True,
        help="also write model.int8.onnx (static int8, calibrated on training data) and time it against "
        "fp32; the table says which file to ship",
    )
    group.add_argument(
        "--int8-tolerance",
        metavar="T",
        type=float,
        help="int8 ships when it loses at most T of the quality measure (accuracy, or cosine to the dense "
        "model for text; 0.005)",
    )
    group.add_argument(
        "--share-bits",
        metavar="N",
        type=positive_int,
        help="also write model.shared.safetensors: weights shared to 2**N values per layer (Deep "
        "Compression), codebooks fine-tuned",
    )


def add_limit_flags(group: Any) -> None:
    """``--leave``, ``--max-share``, ``--min-heads``, ``--uniform``, ``--min-keep``: what pruning may not
    remove (compress and prune alike; see ``zigprune.core.limits``)."""
    group.add_argument(
        "--leave",
        metavar="PATTERN",
        action="append",
        help="leave whole the channels of modules matching PATTERN (fnmatch on module names, e.g. "
        "'*.attention.*' keeps every head); repeat for several",
    )
    group.add_argument(
        "--max-share", metavar="S", type=float, help="remove at most this share of any layer's width (1)"
    )
    group.add_argument(
        "--min-heads", metavar="N", type=int, help="keep at least N heads per attention layer (0)"
    )
    group.add_argument(
        "--min-keep",
        metavar="S",
        type=float,
        help="every layer keeps this share of its width unless the target needs it (0.1; 0: off)",
    )
    group.add_argument(
        "--uniform",
        action="store_const",
        const=True,
        help="every repeated layer keeps the same width (a Hugging Face model then also saves as a "
        "from_pretrained folder, hf/)",
    )


def add_compress(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """The ``compress`` sub-parser: every ``Config`` field as a flag, plus where the run goes."""
    d = run.Config()
    p = sub.add_parser(
        "compress",
        help="train once, build the slim model, measure it and save a run directory",
        description=wrap(
            "Train a model once with a group-sparse optimizer (HESSO by default), build the physically "
            "smaller model, check it gives the same outputs, measure params, MACs and latency against the "
            "dense model, and save everything (weights, plan, ONNX, metrics, report with plots) in a run "
            "directory. With no arguments: digits_cnn on scikit-learn's digits, at least 2x fewer MACs with "
            "widths kept multiples of 8, in about 35 s on 2 idle cores: 9 s training the pruned model, 8 s "
            "training the dense baseline (--no-baseline skips it), 10 s for the ONNX export and latency "
            "timing, the rest loading, analysing and reporting; a busy machine takes several times longer."
        ),
        epilog="examples:\n  zigprune compress\n  zigprune compress --model resnet20 --data fashion-mnist "
        "--target macs=2.5x --epochs 15\n  zigprune compress --model my_net.py:build --data "
        "imagefolder:photos --model-kwargs '{\"width\": 32}'\n  zigprune compress --model "
        "hf:path/to/all-MiniLM-L6-v2 --data text:python-docs --distill --target macs=1.5x\n"
        "  zigprune compress --out runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to compress")
    g.add_argument("--model", metavar="SPEC", help=f"zoo name ({d.model} default), {SPEC_FORMS}")
    g.add_argument(
        "--model-kwargs", metavar="JSON", type=json_object, help="keyword arguments of the factory"
    )
    g.add_argument(
        "--weights", metavar="FILE", help="start from this state dict (.safetensors) instead of new weights"
    )
    g.add_argument(
        "--data",
        metavar="NAME",
        help=f"{', '.join(data.names())}, or text:FILE / text:python-docs with --distill (default {d.data})",
    )
    g.add_argument(
        "--data-dir", metavar="DIR", help="folder of the dataset's files (default: its usual place)"
    )
    g.add_argument(
        "--subset", metavar="N", type=int, help="train on N random samples (and a matching test share)"
    )
    g = p.add_argument_group("how")
    g.add_argument("--optimizer", choices=sorted(run.OPTIMIZERS), help=f"default {d.optimizer}")
    g.add_argument("--target", help=f"what to remove: {TARGET_HELP}; default {d.target}")
    g.add_argument(
        "--round-to",
        metavar="N",
        type=int,
        help=f"keep pruned layers' widths multiples of N (default {d.round_to}; 1: any width)",
    )
    g.add_argument(
        "--cost-power",
        metavar="P",
        type=float,
        help="rank groups by importance / cost**P when choosing what to remove (cost: MACs, or time with "
        "--latency-aware): 0 by importance alone, 1 per unit of cost, so costly groups go first "
        "(default 0.5 for a macs= target with --round-to above 1: faster slim models, same accuracy; else 0)",
    )
    add_limit_flags(g)
    g.add_argument(
        "--latency-aware",
        action="store_const",
        const=True,
        help="cost = the time a removal saves, each conv/linear layer timed on this machine at batch 64 "
        "(one thread) at the widths pruning leaves; --cost-power defaults to 1 then",
    )
    g.add_argument(
        "--distill",
        action="store_const",
        const=True,
        help="the starting model (--weights, or a hf: model as saved), frozen, is the teacher: train to "
        "follow its outputs (KL on logits plus the labels' loss; sentence-embedding cosine for text)",
    )
    g.add_argument("--epochs", metavar="N", type=int, help=f"default {d.epochs} (text: 2)")
    g.add_argument(
        "--lr",
        type=float,
        help=f"peak learning rate of the cosine schedule (default {d.lr}; adam(w): 1e-4, text 3e-4)",
    )
    g.add_argument(
        "--variant",
        choices=list(VARIANTS),
        help="the base update (default sgd; adamw for a hf: model)",
    )
    g.add_argument("--momentum", metavar="M", type=float, help=f"default {d.momentum}")
    g.add_argument("--weight-decay", metavar="WD", type=float, help=f"default {d.weight_decay}")
    g.add_argument("--batch-size", metavar="N", type=int, help=f"default {d.batch_size} (text: 16)")
    g.add_argument(
        "--max-length", metavar="N", type=int, help=f"tokens per text line (default {d.max_length})"
    )
    g.add_argument(
        "--seed", metavar="N", type=int, help=f"weights, batch order, augmentation (default {d.seed})"
    )
    g.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_const",
        const=False,
        help="skip training the dense model with plain SGD for the accuracy comparison",
    )
    g.add_argument(
        "--save-dense",
        action="store_const",
        const=True,
        help="also save the trained dense baseline as dense.safetensors (the input of zigprune prune)",
    )
    add_measure_flags(g)
    add_deploy_flags(g)
    g = p.add_argument_group("where")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<data>)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    g.add_argument(
        "--trust-factory", action="store_true", help="with --resume: run the factory the run folder names"
    )
    g.add_argument("--force", action="store_true", help="overwrite the run already in --out")
    g.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        help="torch threads for training (default: 1 for tiny models)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=handler)
