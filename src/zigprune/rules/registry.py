"""Registry of per-op channel rules and the context each rule receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..core.label import Label, ParamRef
from ..core.store import Store

Rule = Callable[["Ctx"], Any]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` for ATen op packets (``"add"``) or exact overloads (``"add.Tensor"``)."""

    def deco(fn: Rule) -> Rule:
        for name in names:
            RULES[name] = fn
        return fn

    return deco


def op_name(target: Any) -> str:
    """``aten.add.Tensor`` -> ``add.Tensor``; other callables by their qualified name."""
    name = getattr(target, "name", None)
    if callable(name) and hasattr(target, "overloadpacket"):
        full = name().split("::")[-1]
        return full if "." in full else f"{full}.default"
    return getattr(target, "__name__", str(target))


def lookup(target: Any) -> Rule | None:
    """The rule for an op: exact overload first, then its packet; in-place variants share the rule."""
    name = op_name(target)
    packet = name.split(".")[0]
    return RULES.get(name) or RULES.get(packet) or (RULES.get(packet[:-1]) if packet.endswith("_") else None)


def _shape(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(int(s) for s in value.shape)
    if isinstance(value, list | tuple):
        return [_shape(v) for v in value]
    return None


@dataclass
class Ctx:
    """What a rule sees: the node, its bound arguments (labels in place of tensors), the store."""

    node: torch.fx.Node
    args: dict[str, Any]
    store: Store
    name: str

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.args.get(key, default)
        return default if value is None else value

    @property
    def out_shape(self) -> Any:
        return _shape(self.node.meta.get("val"))

    def label(self, value: Any) -> Label:
        """The label of a tensor argument; parameters seen where no rule slices them are rigid."""
        if isinstance(value, Label):
            return value
        if isinstance(value, ParamRef):
            return Label.rigid(value.shape)
        raise TypeError(f"expected a tensor argument, got {type(value).__name__}")

    def whole(self, value: Any) -> Label:
        """The label of a tensor argument the op reads whole if it is a parameter (none of its dims may
        then be cut by another rule, since this op's result would not follow)."""
        if isinstance(value, ParamRef):
            self.store.poison_param(value, f"{value.name} is read whole by {self.name}")
        return self.label(value)

    def rigid_out(self) -> Any:
        """Rigid labels for every tensor this node outputs."""
        return _rigid_like(self.node.meta.get("val"))

    def poison_inputs(self, reason: str) -> None:
        """Make every channel element reaching this op unprunable, including parameter dims it reads."""
        for value in _flatten(self.args.values()):
            if isinstance(value, Label):
                self.store.poison(value.ids, reason)
            elif isinstance(value, ParamRef):
                self.store.poison_param(value, reason)


def _rigid_like(val: Any) -> Any:
    if isinstance(val, torch.Tensor):
        return Label.rigid(tuple(int(s) for s in val.shape))
    if isinstance(val, list | tuple):
        return [_rigid_like(v) for v in val]
    return None


def _flatten(values: Any) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list | tuple):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def bind(schema: torch.FunctionSchema, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Name every argument of an ATen call after its schema, filling defaults."""
    bound: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
        else:
            bound[arg.name] = None
    return bound
