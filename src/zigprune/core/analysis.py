"""Walk the traced graph once, applying each op's rule, then resolve the recorded facts into groups."""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
from torch import nn

from .. import rules
from ..errors import ExampleInputError, MetaDeviceError, first_line
from ..rules.opaque import unknown
from ..rules.sizes import module_path
from .check import check as construction_check
from .components import components
from .group_values import on_meta
from .label import Label, ParamRef, varying_dims
from .space import GroupSpace
from .store import Store
from .trace import Inputs, as_inputs, export

MAX_RECTANGLE_ROUNDS = 8


def walk(ep: torch.export.ExportedProgram, model: nn.Module | None = None) -> Store:
    """Apply every node's channel rule; ops without a rule, and uses a rule cannot read (it raised),
    are kept whole with one warning per op.

    ``model`` is the traced module: rules read the size attributes of its submodules from it.
    """
    store = Store(model=model)
    sig = ep.graph_signature
    params, buffers = sig.inputs_to_parameters, sig.inputs_to_buffers
    constants = {**sig.inputs_to_lifted_tensor_constants, **getattr(sig, "inputs_to_lifted_custom_objs", {})}
    env: dict[torch.fx.Node, Any] = {}
    missing: dict[str, int] = {}
    unread: dict[str, list[str]] = {}
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            env[node] = _placeholder(node, params, buffers, constants)
        elif node.op == "call_function":
            env[node] = _call(node, env, store, missing, unread)
        elif node.op == "output":
            for value in _leaves(_substitute(node.args, env)):
                if isinstance(value, Label):
                    store.poison(value.ids, "channels reach a model output")
                elif isinstance(value, ParamRef):
                    store.poison_param(value, "a parameter is returned as an output")
    for name, count in missing.items():
        warnings.warn(
            f"zigprune: no channel rule for aten op '{name}' ({count} use(s)); channels touching it are left "
            "unprunable, so the result stays exact",
            stacklevel=3,
        )
    for name, errors in unread.items():
        warnings.warn(
            f"zigprune: the channel rule for '{name}' cannot read {len(errors)} use(s) of it ({errors[0]}); "
            "channels touching them are left unprunable, so the result stays exact",
            stacklevel=3,
        )
    return store


def _placeholder(node: torch.fx.Node, params: dict, buffers: dict, constants: dict) -> Any:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    shape = tuple(int(s) for s in val.shape)
    identity = tuple(range(len(shape)))
    if node.name in params:
        return ParamRef(params[node.name], "param", shape, identity)
    if node.name in buffers:
        return ParamRef(buffers[node.name], "buffer", shape, identity)
    if node.name in constants:
        return ParamRef(str(constants[node.name]), "constant", shape, identity)
    return Label.rigid(shape)


def _call(node: torch.fx.Node, env: dict, store: Store, missing: dict[str, int], unread: dict) -> Any:
    if node.target is operator.getitem:
        container, index = node.args
        return env[container][index] if env.get(container) is not None else None
    args = _substitute(node.args, env)
    kwargs = _substitute(node.kwargs, env)
    schema = getattr(node.target, "_schema", None)
    name = rules.op_name(node.target)
    bound = (
        rules.bind(schema, args, kwargs) if schema is not None else {f"arg{i}": a for i, a in enumerate(args)}
    )
    ctx = rules.Ctx(node, bound, store, name)
    rule = rules.lookup(node.target) if schema is not None else None
    if rule is None:
        touched = (v.labeled if isinstance(v, Label) else isinstance(v, ParamRef) and v.kind == "param"
                   for v in _leaves(bound))  # fmt: skip
        if any(touched):
            missing[name] = missing.get(name, 0) + 1
        rule = unknown
    try:
        return rule(ctx)
    except Exception as err:  # a layout the rule does not know: conservative, named in one warning
        unread.setdefault(name, []).append(f"{type(err).__name__}: {first_line(err)} in {module_path(node)}")
        return unknown(ctx)


def _substitute(value: Any, env: dict) -> Any:
    if isinstance(value, torch.fx.Node):
        return env.get(value)
    if isinstance(value, list | tuple):
        return type(value)(_substitute(v, env) for v in value)
    if isinstance(value, dict):
        return {k: _substitute(v, env) for k, v in value.items()}
    return value


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


def resolve(store: Store) -> torch.Tensor:
    """Root element id of every element, after forcing every tensor to be prunable along one dim only."""
    extra_a: list[torch.Tensor] = []
    extra_b: list[torch.Tensor] = []
    for _ in range(MAX_RECTANGLE_ROUNDS):
        a = (
            torch.cat([*store.union_a, *extra_a])
            if store.union_a or extra_a
            else torch.empty(0, dtype=torch.long)
        )
        b = (
            torch.cat([*store.union_b, *extra_b])
            if store.union_b or extra_b
            else torch.empty(0, dtype=torch.long)
        )
        root = components(store.count, a, b)
        added = False
        for ids in store.joints:
            classes = torch.where(ids >= 0, root[ids.clamp(min=0)], ids)
            varying = varying_dims(classes)
            if len(varying) < 2:
                continue
            keep = max(
                varying,
                key=lambda d: classes.movedim(d, 0).reshape(classes.shape[d], -1)[:, 0].unique().numel(),
            )
            tied = [d for d in varying if d != keep]
            store.refuse_mixed(ids, tied, "channels are tied to positions without channel identity")
            first = classes
            for d in tied:
                first = first.narrow(d, 0, 1)
            pair_a, pair_b = torch.broadcast_tensors(classes, first)
            ok = (pair_a >= 0) & (pair_b >= 0)
            extra_a.append(pair_a[ok])
            extra_b.append(pair_b[ok])
            added = True
        if not added:
            return root
    return root


def analyze_model(model: nn.Module, example_inputs: Any) -> tuple[Store, torch.Tensor, Inputs]:
    """Trace, walk and resolve: the raw facts a GroupSpace is built from."""
    inputs = as_inputs(example_inputs, model)
    empty = [tuple(v.shape) for v in inputs.tensors() if v.numel() == 0]
    if empty:
        raise ExampleInputError(
            f"an example input has no elements (shape {empty[0]}); pass at least one sample (a batch of 2 "
            "is best: torch.export treats a batch of 1 as a fixed size)"
        )
    ep = export(model, inputs)
    store = walk(ep, model)
    return store, resolve(store), inputs


def analyze(model: nn.Module, example_inputs: Any, check: bool = True) -> GroupSpace:
    """Find the zero-invariant groups of ``model``.

    ``example_inputs`` is a Tensor, a tuple of positional arguments, or a dict of keyword arguments.
    With ``check`` (default), copies of the model are constructed with several selections of groups
    zeroed (see :mod:`zigprune.core.check`); families that must stay equal in width are tied, and only
    the groups whose removal breaks the outputs are made unprunable (``space.check`` says which).
    """
    if check and on_meta(model):
        raise MetaDeviceError(
            "the model is on the meta device, so the construction check cannot run it; pass "
            "zp.analyze(model, inputs, check=False)"
        )
    store, root, inputs = analyze_model(model, example_inputs)
    space = GroupSpace(model, inputs, store, root)
    if check:
        space = construction_check(space, store, lambda: GroupSpace(model, inputs, store, resolve(store)))
    return space


def reanalyze(model: nn.Module, example_inputs: Any, ties: list[tuple[list[int], list[int]]]) -> GroupSpace:
    """The space a checked analysis gave, rebuilt from the ties its check recorded (``space.check.ties``).

    Loading uses it: the groups (and so the saved plan's fingerprint) come out the same, without
    running the construction check on a freshly built model.
    """
    store, _, inputs = analyze_model(model, example_inputs)
    for a, b in ties:
        store.union(torch.as_tensor(a, dtype=torch.long), torch.as_tensor(b, dtype=torch.long))
    return GroupSpace(model, inputs, store, resolve(store))
