"""What determines a compress run (``run.json``), and where its folder goes by default."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import data


@dataclass
class Config:
    """Everything that determines a run (saved as ``run.json`` so ``--resume`` continues the same run)."""

    model: str = "digits_cnn"
    data: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
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
    onnx: bool = True
    latency: bool = True
    latency_seconds: float = 0.5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A Config from ``run.json``, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def default_out(config: Config) -> Path:
    """``runs/<model>-<data>``, named from the specs' last parts (a factory's name, a folder's name)."""

    def slug(text: str) -> str:
        tail = re.split(r"[:/\\]", text.rstrip("/\\"))[-1].removesuffix(".py")
        head = text.split(":")[0] if ":" in text and not text.startswith("hf:") else ""
        name = f"{head}-{tail}" if head in data.names() or head == "imagefolder" else tail
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"

    return Path("runs") / f"{slug(config.model)}-{slug(config.data)}"
