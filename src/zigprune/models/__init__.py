"""Model zoo: a name-keyed registry of small PyTorch models to prune and test against."""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TypeVar

import torch
from torch import nn

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_MODULES = ("resnet_cifar", "resnet", "vgg", "mobilenetv2", "densenet", "small")


@dataclass(frozen=True)
class _Entry:
    """A registered factory and the per-sample shape of its default example input."""

    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    vocab: int | None


_REGISTRY: dict[str, _Entry] = {}


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
    """The registry entry for `name`, or a KeyError that lists the valid names."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return _REGISTRY[name]


def create(name: str, in_channels: int | None = None, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build model `name`; `in_channels=None` keeps its own default (3, or 1 for digits_cnn)."""
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    return _entry(name).factory(num_classes=num_classes, **kwargs)


def example_input(name: str, batch: int = 2) -> torch.Tensor:
    """A deterministic example batch in the default input shape registered for `name`."""
    entry = _entry(name)
    shape = (batch, *entry.input_shape)
    generator = torch.Generator().manual_seed(0)
    if entry.vocab is not None:
        return torch.randint(entry.vocab, shape, generator=generator)
    return torch.randn(shape, generator=generator)
