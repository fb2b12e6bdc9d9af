"""What determines a compress run (``run.json``), and where its folder goes by default."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.spec import ModelSpec


@dataclass
class Config:
    """Everything that determines a run (saved as ``run.json`` so ``--resume`` continues the same run).

    A factory file's path and a ``weights`` file's are made absolute, so the run resumes and loads from
    any working folder.
    """

    model: str = "digits_cnn"
    data: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    weights: str | None = None
    optimizer: str = "hesso"
    target: str = "macs=0.5"
    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    round_to: int = 8
    cost_power: float | None = None
    latency_aware: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    baseline: bool = True
    save_dense: bool = False
    onnx: bool = True
    latency: bool = True
    latency_seconds: float = 0.5

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("round_to", 1)):
            check_number(name, getattr(self, name), low, integer=True)
        if self.subset is not None:
            check_number("subset", self.subset, 1, integer=True)
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("latency_seconds", self.latency_seconds, 0.0, strict=True)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum is {self.momentum}; give a number in [0, 1), e.g. 0.9")
        if self.save_dense and not self.baseline:
            raise ConfigError("--save-dense saves the dense baseline; drop --no-baseline")
        self.model = ModelSpec(self.model).absolute().text
        if self.weights is not None:
            self.weights = str(Path(self.weights).expanduser().resolve())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A Config from ``run.json``, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def check_number(name: str, value: Any, low: float, *, integer: bool = False, strict: bool = False) -> None:
    """``value`` must be a finite number (an integer if asked) at least ``low`` (above it if ``strict``)."""
    flag = "--" + name.replace("_", "-")
    kind = int if integer else (int, float)
    number = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < low or (strict and value == low):
        bound = f"above {low:g}" if strict else f"at least {low:g}"
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{flag} is {value!r}; give {what} {bound}")


def default_out(config: Config) -> Path:
    """``runs/<model>-<data>``, named from the specs' last parts; a factory keeps its file or module name
    (``nets/my_net.py:build`` -> ``my_net-build``), so two files' ``build`` factories do not collide."""

    def slug(text: str) -> str:
        head, _, tail = text.removeprefix("hf:").rstrip("/\\").rpartition(":")
        tail = re.split(r"[/\\]", tail)[-1]
        head = re.split(r"[/\\.]", head.removesuffix(".py"))[-1] if head else ""
        name = f"{head}-{tail}" if head else tail
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"

    return Path("runs") / f"{slug(config.model)}-{slug(config.data)}"
