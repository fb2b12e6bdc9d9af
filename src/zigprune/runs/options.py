"""Run settings declared once: each field of a run's config carries its command-line flag (help, value
type, metavar) as dataclass field metadata, and the settings several runs share are small dataclasses
that a run's config inherits: where the model and data come from, what a selection may remove, what
is measured, what ships besides the slim model. ``zigprune.cli`` builds every flag from these.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from ..core.limits import MIN_KEEP
from ..core.selection import TARGET_HELP
from ..data import names
from ..models.spec import SPEC_FORMS

GROUPS = {"what": "what to run on", "how": "how", "measure": "what to measure and ship"}


@dataclass(frozen=True)
class Flag:
    """How a config field appears on the command line. ``kind``: ``value`` (``--name V``), ``on``
    (``--name`` sets True), ``off`` (``--no-name`` sets False), ``append`` (``--name V``, repeatable).
    ``help`` may name ``{default}``, the field's default in the config that declares it."""

    help: str
    kind: str = "value"
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    group: str = "how"


def option(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **flag: Any) -> Any:
    """A dataclass field with its ``Flag``: ``option(0.5, help="...", metavar="S", type=float)``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"flag": Flag(**flag)})
    return field(default=default, metadata={"flag": Flag(**flag)})


def redefault(part: type, name: str, default: Any) -> Any:
    """Field ``name`` of the shared ``part`` with another default, its flag unchanged (a prune run starts
    from a trained model, so it names one by default where a compress run trains a new one)."""
    (found,) = (f for f in fields(part) if f.name == name)
    return field(default=default, metadata=found.metadata)


def flags(config: type) -> list[tuple[Field[Any], Flag]]:
    """The fields of ``config`` that have a flag, in declaration order."""
    return [(f, f.metadata["flag"]) for f in fields(config) if "flag" in f.metadata]


def default_of(item: Field[Any]) -> Any:
    return item.default_factory() if item.default_factory is not MISSING else item.default


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


@dataclass
class Source:
    """Which model, with which weights, on which data."""

    model: str = option("digits_cnn", metavar="SPEC", group="what",
                        help=f"zoo name ({{default}} default), {SPEC_FORMS}")  # fmt: skip
    model_kwargs: dict[str, Any] = option(
        factory=dict, metavar="JSON", type=json_object, group="what", help="keyword arguments of the factory"
    )
    weights: str | None = option(
        None,
        metavar="FILE",
        group="what",
        help="the model's trained weights, a state dict (.safetensors); without it compress starts from new "
        "weights, and a hf: model has its own",
    )
    data: str = option(
        "digits",
        metavar="NAME",
        group="what",
        help=f"{', '.join(names())}, or text:FILE / text:python-docs for a hf: model (compress: with "
        "--distill); default {default}",
    )
    data_dir: str | None = option(
        None, metavar="DIR", group="what", help="folder of the dataset's files (default: its usual place)"
    )
    max_length: int = option(128, metavar="N", type=int, help="tokens per text line (default {default})")
    seed: int = option(
        0,
        metavar="N",
        type=int,
        help="new weights, batch order, augmentation, calibration samples (default {default})",
    )


@dataclass
class Shaping:
    """How the widths a selection leaves are shaped (multiples of N, ranked against cost) and what may
    not go: shared by a target's selection and a search's budget."""

    round_to: int = option(
        8, metavar="N", type=int, help="keep pruned layers' widths multiples of N (default {default}; 1: any)"
    )
    cost_power: float | None = option(
        None,
        metavar="P",
        type=float,
        help="rank groups by importance / cost**P when choosing what to remove (cost: MACs, or time with "
        "--latency-aware): 0 by importance alone, 1 per unit of cost, so costly groups go first "
        "(default 0.5 for a macs= target with --round-to above 1: faster slim models, same accuracy; else 0)",
    )
    leave: list[str] = option(
        factory=list,
        kind="append",
        metavar="PATTERN",
        help="leave whole the channels of modules matching PATTERN (fnmatch on module names, e.g. "
        "'*.attention.*' keeps every head); repeat for several",
    )
    max_share: float = option(
        1.0, metavar="S", type=float, help="remove at most this share of any layer's width ({default})"
    )
    min_heads: int = option(
        0, metavar="N", type=int, help="keep at least N heads per attention layer ({default})"
    )
    min_keep: float = option(
        MIN_KEEP,
        metavar="S",
        type=float,
        help="every layer keeps this share of its width unless the target needs it ({default}; 0: off)",
    )
    uniform: bool = option(
        False,
        kind="on",
        help="every repeated layer keeps the same width (a Hugging Face model then also saves as a "
        "from_pretrained folder, hf/)",
    )


@dataclass
class Selection(Shaping):
    """What to remove, how groups are ranked against their cost, and what may not go."""

    target: str = option("macs=0.5", help=f"what to remove: {TARGET_HELP}; default {{default}}")


@dataclass
class Timing:
    """How long each model is timed (a run's latency table, ``export --int8``'s verdict)."""

    latency_seconds: float = option(
        0.5,
        metavar="S",
        type=float,
        group="measure",
        help="time each model at least S per batch size ({default})",
    )


@dataclass
class Measurement(Timing):
    """What a run measures once it has built the slim model."""

    onnx: bool = option(True, kind="off", group="measure", help="skip model.onnx")
    latency: bool = option(True, kind="off", group="measure", help="skip timing")


@dataclass
class Deployment:
    """What ships besides the fp32 slim model (a compress run, or ``zigprune export`` on a finished one)."""

    int8: bool = option(
        False,
        kind="on",
        group="measure",
        help="also write model.int8.onnx (static int8, calibrated on training data) and time it against "
        "fp32; the table says which file to ship",
    )
    int8_tolerance: float | None = option(
        None,
        metavar="T",
        type=float,
        group="measure",
        help="int8 ships when it loses at most T of the quality measure (accuracy, or cosine to the dense "
        "model for text; 0.005)",
    )
    share_bits: int | None = option(
        None,
        metavar="N",
        type=positive_int,
        group="measure",
        help="also write model.shared.safetensors: weights shared to 2**N values per layer (Deep "
        "Compression), codebooks fine-tuned",
    )
