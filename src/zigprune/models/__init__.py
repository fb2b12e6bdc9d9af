"""Model zoo: a name-keyed registry of small PyTorch models to prune and test against."""

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Registry

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_MODULES = ("resnet_cifar", "resnet", "vgg", "mobilenetv2", "densenet", "small")


@dataclass(frozen=True)
class _Entry:
    """A registered factory and the per-sample shape of its default example input."""

    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    vocab: int | None


_REGISTRY: Registry[_Entry] = Registry("model", error=ModelError)


def register(
    name: str, input_shape: tuple[int, ...], vocab: int | None = None
) -> Callable[[Factory], Factory]:
    """Register a factory under `name`; `vocab` marks inputs as token ids below it."""

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, tuple(input_shape), vocab)
        return factory

    return decorate


def _load_all() -> None:
    """Import the zoo modules on first use so importing this package stays cheap."""
    for module in _MODULES:
        import_module(f"{__name__}.{module}")


def names() -> list[str]:
    """Sorted names of all registered models."""
    _load_all()
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    """The registry entry for `name`, or an UnknownNameError (a KeyError too) that lists the valid names."""
    _load_all()
    return _REGISTRY[name]


def create(name: str, in_channels: int | None = None, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build model `name`; `in_channels=None` keeps its own default (3, or 1 for digits_cnn)."""
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    return _entry(name).factory(num_classes=num_classes, **kwargs)


def fit_kwargs(name: str, sample_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """The keyword arguments that fit zoo model `name` to samples of `sample_shape` and `num_classes`.

    Only those its factory takes: `in_channels`, `in_features` (models that flatten their input) and
    `image_size`; a ModelError naming the models that fit when `name` cannot take such samples.
    """
    shape = tuple(int(n) for n in sample_shape)
    if not _fits(name, shape):
        fitting = ", ".join(n for n in names() if _fits(n, shape))
        raise ModelError(
            f"zoo model {name!r} takes inputs of shape {_entry(name).input_shape}, not samples of shape "
            f"{shape}; pick one that does: {fitting or 'none'}"
        )
    takes = inspect.signature(_entry(name).factory).parameters
    chosen = {
        "in_channels": shape[0],
        "in_features": math.prod(shape),
        "image_size": min(shape[1:], default=0),
    }
    return {"num_classes": num_classes, **{k: v for k, v in chosen.items() if k in takes and v}}


def _fits(name: str, shape: tuple[int, ...]) -> bool:
    """Whether zoo model `name` runs on float samples of `shape`: not a token model, and of the same
    rank as its registered input unless it flattens its input (takes `in_features`)."""
    entry = _entry(name)
    flattens = "in_features" in inspect.signature(entry.factory).parameters
    return entry.vocab is None and (flattens or len(entry.input_shape) == len(shape))


def example_input(name: str, batch: int = 2) -> torch.Tensor:
    """A deterministic example batch in the default input shape registered for `name`."""
    entry = _entry(name)
    shape = (batch, *entry.input_shape)
    generator = torch.Generator().manual_seed(0)
    if entry.vocab is not None:
        return torch.randint(entry.vocab, shape, generator=generator)
    return torch.randn(shape, generator=generator)
