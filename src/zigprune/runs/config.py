"""What determines a compress run (``run.json``), and where its folder goes by default."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..core.limits import Limits
from ..data.text import is_text
from ..errors import ConfigError
from ..io.onnx import has_onnx
from ..models.spec import ModelSpec
from ..optim import OPTIMIZERS
from ..optim.base import VARIANTS
from .options import Deployment, Measurement, Selection, Source, option


@dataclass
class Config(Deployment, Measurement, Selection, Source):
    """Everything that determines a run (saved as ``run.json`` so ``--resume`` continues the same run).

    A factory file's path and a ``weights`` file's are made absolute, so the run resumes and loads from
    any working folder. ``epochs``, ``batch_size``, ``variant`` and ``lr`` left as None take the
    defaults of the data and model (``defaults_for``), so ``run.json`` always holds the values used.
    The shared parts (``Source``, ``Selection``, ``Measurement``, ``Deployment``) come from ``options``.
    """

    subset: int | None = option(
        None,
        metavar="N",
        type=int,
        group="what",
        help="train on N random samples (and a matching test share)",
    )
    optimizer: str = option("hesso", choices=sorted(OPTIMIZERS), help="default {default}")
    policy: str | None = option(
        None,
        metavar="FILE",
        help="train once to the widths of a policy saved by zigprune search (policy.json) in place of "
        "--target (hesso, dhspg): search, then train once",
    )
    latency_aware: bool = option(
        False,
        kind="on",
        help="cost = the time a removal saves, each conv/linear layer timed on this machine at batch 64 "
        "(one thread) at the widths pruning leaves; --cost-power defaults to 1 then",
    )
    distill: bool = option(
        False,
        kind="on",
        help="the starting model (--weights, or a hf: model as saved), frozen, is the teacher: train to "
        "follow its outputs (KL on logits plus the labels' loss; sentence-embedding cosine for text)",
    )
    epochs: int | None = option(None, metavar="N", type=int, help="default 20 (text: 2)")
    lr: float | None = option(
        None,
        type=float,
        help="peak learning rate of the cosine schedule (default 0.05; adam(w): 1e-4, text 3e-4)",
    )
    variant: str | None = option(
        None, choices=VARIANTS, help="the base update (default sgd; adamw for a hf: model)"
    )
    momentum: float = option(0.9, metavar="M", type=float, help="default {default}")
    weight_decay: float = option(5e-4, metavar="WD", type=float, help="default {default}")
    batch_size: int | None = option(None, metavar="N", type=int, help="default 64 (text: 16)")
    baseline: bool = option(
        True, kind="off", help="skip training the dense model with plain SGD for the accuracy comparison"
    )
    save_dense: bool = option(
        False,
        kind="on",
        help="also save the trained dense baseline as dense.safetensors (the input of zigprune prune)",
    )

    def __post_init__(self) -> None:
        for name, value in defaults_for(self).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant is {self.variant!r}; use one of {', '.join(VARIANTS)}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("round_to", 1), ("max_length", 1)):
            check_number(name, getattr(self, name), low, integer=True)
        if self.subset is not None:
            check_number("subset", self.subset, 1, integer=True)
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("latency_seconds", self.latency_seconds, 0.0, strict=True)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum is {self.momentum}; give a number in [0, 1), e.g. 0.9")
        check_deploy(self)
        if self.save_dense and not self.baseline:
            raise ConfigError("--save-dense saves the dense baseline; drop --no-baseline")
        if self.save_dense and self.distill:
            raise ConfigError(
                "--save-dense saves a dense baseline, and --distill trains none: the dense "
                "model is the one you started from"
            )
        if self.distill:
            self.baseline = False
        check_text_model(self.model, self.data)
        limits_of(self)
        if is_text(self.data) and not self.distill:
            raise ConfigError(
                f"text data ({self.data}) has no labels to train on: add --distill, so the "
                "model learns to follow its own starting outputs while it is pruned"
            )
        if self.distill and self.weights is None and ModelSpec(self.model).kind != "hf":
            raise ConfigError(
                "--distill starts from a trained model, the teacher: give --weights FILE "
                "(e.g. from zigprune compress --save-dense) or a Hugging Face model, hf:PATH"
            )
        if self.policy is not None:
            if self.optimizer == "hspg":
                raise ConfigError("--policy sets the widths HESSO or DHSPG prune to; hspg takes no target")
            self.policy = str(Path(self.policy).expanduser().resolve())
        self.model = ModelSpec(self.model).absolute().text
        if self.weights is not None:
            self.weights = str(Path(self.weights).expanduser().resolve())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A Config from ``run.json``, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def check_deploy(config: Any) -> None:
    """``--int8`` quantizes the ONNX export and times it; ``--share-bits`` takes 1 to 8 bits."""
    if config.share_bits is not None:
        check_number("share_bits", config.share_bits, 1, integer=True)
        if config.share_bits > 8:
            raise ConfigError(f"--share-bits is {config.share_bits}; give 1 to 8 bits per weight, e.g. 4")
    if config.int8 and not config.onnx:
        raise ConfigError("--int8 quantizes the slim model's ONNX export; drop --no-onnx")
    if config.int8 and not config.latency:
        raise ConfigError("--int8 times int8 against fp32 to say which file to ship; drop --no-latency")
    check_int8_tolerance(config.int8_tolerance)


def check_int8_tolerance(tolerance: float | None) -> None:
    """``--int8-tolerance``: None (the default) or a share of the quality measure in [0, 1)."""
    if tolerance is not None:
        check_number("int8_tolerance", tolerance, 0.0)
        if tolerance >= 1:
            raise ConfigError(f"--int8-tolerance is {tolerance!r}; give a number in [0, 1), e.g. 0.01")


def check_onnx_installed(int8: bool) -> None:
    """``--int8`` quantizes the ONNX export: a ``ConfigError`` saying what to install when ONNX is missing."""
    if int8 and not has_onnx():
        raise ConfigError(
            "--int8 quantizes the ONNX export: pip install 'zigprune[onnx]' (onnx, onnxruntime)"
        )


def defaults_for(config: Config) -> dict[str, Any]:
    """The training defaults of the run's data and model: text runs distil a transformer, so they take
    AdamW at 3e-4 in batches of 16 lines for two epochs (on all-MiniLM-L6-v2 at 1.5x fewer MACs:
    mean cosine 0.905, against 0.894 at 1e-4); other hf: models AdamW at 1e-4; image models SGD at
    0.05 for 20 epochs."""
    text = is_text(config.data)
    variant = config.variant or ("adamw" if ModelSpec(config.model).kind == "hf" else "sgd")
    return {
        "epochs": 2 if text else 20,
        "batch_size": 16 if text else 64,
        "variant": variant,
        "lr": 0.05 if variant == "sgd" else (3e-4 if text else 1e-4),
    }


def limits_of(config: Any) -> Limits:
    """The run's limits on what pruning removes (``--leave``, ``--max-share``, ``--min-heads``,
    ``--uniform``, ``--min-keep``), shared by compress and prune; a ``ConfigError`` naming the flag when
    one is bad."""
    try:
        return Limits(
            tuple(config.leave), config.max_share, config.min_heads, config.uniform, config.min_keep
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"--{str(err).replace('_', '-', 1)}") from None


def check_text_model(model: str, data: str) -> None:
    """Text data is tokenized by a Hugging Face model's own tokenizer: a ``ConfigError`` for others."""
    if is_text(data) and ModelSpec(model).kind != "hf":
        raise ConfigError(f"text data ({data}) needs a Hugging Face model: --model hf:PATH")


def check_number(name: str, value: Any, low: float, *, integer: bool = False, strict: bool = False) -> None:
    """``value`` must be a finite number (an integer if asked) at least ``low`` (above it if ``strict``)."""
    flag = "--" + name.replace("_", "-")
    kind = int if integer else (int, float)
    number = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < low or (strict and value == low):
        bound = f"above {low:g}" if strict else f"at least {low:g}"
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{flag} is {value!r}; give {what} {bound}")


def default_out(config: Any, suffix: str = "") -> Path:
    """``runs/<model>-<data>`` (``-<suffix>`` after it when given), named from the specs' last parts; a
    factory keeps its file or module name (``nets/my_net.py:build`` -> ``my_net-build``), so two files'
    ``build`` factories do not collide."""

    def slug(text: str) -> str:
        head, _, tail = text.removeprefix("hf:").rstrip("/\\").rpartition(":")
        tail = re.split(r"[/\\]", tail)[-1]
        head = re.split(r"[/\\.]", head.removesuffix(".py"))[-1] if head else ""
        name = f"{head}-{tail}" if head else tail
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"

    return Path("runs") / "-".join([slug(config.model), slug(config.data), *([suffix] if suffix else [])])
