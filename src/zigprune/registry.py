"""Named entries of one kind (models, methods, optimizers, criteria ...), with one error for a name
that is not there: it says the kind, the name and every valid name, whichever registry raised it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import UnknownNameError, ZigpruneError

T = TypeVar("T")


class Registry(dict[str, T]):
    """A dict of named entries; ``registry[name]`` with an unknown ``name`` raises
    :class:`~zigprune.errors.UnknownNameError` (also an instance of ``error``, the domain's own error
    type, so ``except OptimizerError`` still catches an unknown optimizer)."""

    def __init__(
        self,
        kind: str,
        entries: Iterable[tuple[str, T]] | dict[str, T] = (),
        error: type[Exception] = ZigpruneError,
        hint: str = "",
    ) -> None:
        super().__init__(entries)
        self.kind = kind
        self.hint = hint
        self.error = _unknown_error(error)

    def __missing__(self, name: str) -> T:
        raise self.error(self.unknown(name))

    def unknown(self, name: object) -> str:
        """The message for ``name``: what kind, which name, and the valid ones."""
        return f"unknown {self.kind} {name!r}; valid names: {', '.join(self) or 'none'}{self.hint}"

    def check(self, name: str) -> str:
        """``name`` itself when it is registered, else the error."""
        self[name]
        return name

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers what it decorates under ``name``."""

        def add(entry: T) -> T:
            self[name] = entry
            return entry

        return add


_ERRORS: dict[type[Exception], type[UnknownNameError]] = {}


def _unknown_error(error: type[Exception]) -> type[UnknownNameError]:
    """UnknownNameError that is also ``error`` (one class per domain error, made once)."""
    if issubclass(error, UnknownNameError):
        return error
    if error not in _ERRORS:
        _ERRORS[error] = type(f"Unknown{error.__name__}", (UnknownNameError, error), {"__module__": __name__})
    return _ERRORS[error]
