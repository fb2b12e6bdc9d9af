"""Which code loading a run folder may run: the folder names a model, the caller decides what executes.

Zoo names and Hugging Face folders build from code in zigprune and transformers (no remote code). A
factory (``file.py:fn`` or ``module:fn``) is code the folder would choose, so it runs only when the
caller passes it (``factory=``) or allows the recorded one (``trust_factory=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import LoadError, ModelError
from ..models.spec import ModelSpec, resolve

Factory = Callable[..., nn.Module] | str
SAFE_KINDS = ("zoo", "hf")


def build_recorded(spec: ModelSpec, factory: Factory | None = None, trust_factory: bool = False) -> nn.Module:
    """The original model of a saved run, built only from code the caller names or allows.

    ``factory`` (a callable taking the recorded keyword arguments, or a spec text such as
    ``"nets.py:build"``) replaces the recorded factory; ``trust_factory`` runs the recorded one.
    """
    if factory is not None:
        if callable(factory):
            return _checked(factory(**spec.kwargs), spec.text)
        return resolve(str(factory), **spec.kwargs).build()
    if spec.kind in SAFE_KINDS or trust_factory:
        return spec.build()
    raise LoadError(
        f"the saved run names the factory {spec.text!r}, and loading runs no code a folder chooses: pass "
        "zp.load(folder, factory=<your function or 'file.py:name'>), or trust_factory=True if you trust "
        "this folder (CLI: --factory SPEC or --trust-factory)"
    )


def _checked(model: Any, text: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ModelError(f"the factory given for {text!r} returned {type(model).__name__}, not an nn.Module")
    return model
