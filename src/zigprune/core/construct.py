"""GroupSpace + weights -> slim module, checked against the zero-group full model.

Every all-zero group is cut from every parameter and buffer dim it owns (and from the consumers'
input dims), module attributes are rewritten, and the slim model must reproduce the full model's
outputs on the example inputs. If it does not, the failing family is found by bisection and named.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConstructionError, MetaDeviceError, first_line
from . import attributes
from .group_values import on_meta
from .trace import Inputs, eval_mode

if TYPE_CHECKING:
    from .space import GroupSpace


def construct(space: GroupSpace, check: bool = True, atol: float = 1e-4) -> nn.Module:
    if check and on_meta(space.model):
        raise MetaDeviceError(
            "the model is on the meta device, so the slim model cannot be checked against it; pass "
            "space.construct(check=False) (the result is a slim meta module; zp.load_pruned fills it)"
        )
    pruned = space.pruned_classes(space.zero_groups())
    slim = build(space, pruned)
    if check:
        reference = outputs(space.model, space.inputs)
        problem = mismatch(reference, slim, space.inputs, atol)
        if problem:
            raise ConstructionError(_advice(space, culprits(space, pruned, reference, atol), problem))
    return slim


def _advice(space: GroupSpace, families: list[int], problem: str) -> str:
    """What broke, which families, and what to do that is not what the user already did."""
    names = ", ".join(f"{space.families[f].name} (#{f})" for f in families) or "none found by bisection"
    return (
        f"the slim model does not reproduce the full model ({problem}); failing families: {names}. "
        f"space.drop_families({families}, 'construction fails') keeps their channels (zeros included) and "
        "construct() then works; zp.analyze(..., check=True) finds such families before training. Please "
        "report the model so its rule can be fixed"
    )


def build(space: GroupSpace, pruned: torch.Tensor, share: bool = False, root: str = "") -> nn.Module:
    """Copy the model, cutting every position whose class is in ``pruned`` (a bool mask over classes).

    Sliced tensors are placed in ``deepcopy``'s memo, so big weights are copied once (already cut)
    and weights shared between modules (tied embeddings) stay shared. Then module attributes are
    rewritten: by each touched module's updater, for attention heads, and for tracked sizes.
    ``share``: the tensors no group cuts are the model's own, not copies, and only the module tree is
    copied (a probe that only runs the slim model once: a large model is not copied whole for every
    probe, and deepcopy's per-object dispatch was most of a probe's cost). ``root``: build only that
    submodule (a probe of a family it holds whole; cuts outside it are ignored).
    """
    top = space.model.get_submodule(root) if root else space.model
    prefix = f"{root}." if root else ""
    memo: dict[int, Any] = {}
    if share:
        memo.update((id(t), t) for t in (*top.parameters(), *top.buffers()))
    cut: set[int] = set()
    for name, cuts in kept_indices(space, pruned).items():
        if not name.startswith(prefix):
            continue
        tensor = lookup(space.model, name)
        new = tensor.detach()
        for dim, index in cuts:
            new = new.index_select(dim, index.to(new.device))
        is_param = isinstance(tensor, nn.Parameter)
        memo[id(tensor)] = nn.Parameter(new, requires_grad=tensor.requires_grad) if is_param else new
        cut.add(id(tensor))
    slim = _skeleton(top, memo, {}) if share else copy.deepcopy(top, memo)
    touched = {path for path, module in top.named_modules(remove_duplicate=False) if _owns(module, cut)}
    for path in sorted(touched):
        attributes.update(top.get_submodule(path), slim.get_submodule(path))
    for head in space.heads:
        kept_q = int((~pruned[head.q_classes]).sum())
        inside = head.module == root or head.module.startswith(prefix)
        if inside and kept_q < head.q_classes.numel():
            kept_kv = int((~pruned[head.kv_classes]).sum())
            attributes.update_heads(
                slim.get_submodule(head.module[len(prefix) :] if head.module != root else ""),
                head.q_classes.numel(),
                head.kv_classes.numel(),
                kept_q,
                kept_kv,
            )
    attributes.rewrite_tracked(top, slim, space.slices, pruned, root)
    return slim


_CONTAINERS = (dict, list, tuple)


def _skeleton(module: nn.Module, tensors: dict[int, Any], done: dict[int, nn.Module]) -> nn.Module:
    """A copy of ``module``'s tree sharing every tensor not in ``tensors`` (id -> replacement).

    Each module gets its own attribute dict, and plain container attributes (a cache dict, a list of
    weights) their own shallow copy, so rewriting the copy's attributes leaves the model untouched
    (hook dicts stay shared: nothing registers hooks on a probe's copy).
    """
    if id(module) in done:
        return done[id(module)]
    new = object.__new__(type(module))
    done[id(module)] = new
    state = {k: _container(v, tensors) if type(v) in _CONTAINERS else v for k, v in module.__dict__.items()}
    state["_parameters"] = {k: tensors.get(id(v), v) for k, v in module._parameters.items()}
    state["_buffers"] = {k: tensors.get(id(v), v) for k, v in module._buffers.items()}
    children = module._modules.items()
    state["_modules"] = {k: m if m is None else _skeleton(m, tensors, done) for k, m in children}
    new.__dict__.update(state)
    return new


def _container(value: dict | list | tuple, tensors: dict[int, Any]) -> dict | list | tuple:
    """A shallow copy whose cut tensors are replaced (an RNN's ``_flat_weights`` list names its weights)."""
    if type(value) is dict:
        return {k: tensors.get(id(v), v) for k, v in value.items()}
    return type(value)(tensors.get(id(v), v) for v in value)


def kept_indices(space: GroupSpace, pruned: torch.Tensor) -> dict[str, list[tuple[int, torch.Tensor]]]:
    """Per parameter/buffer that loses positions: the kept indices along each dim that is cut."""
    keep: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for s, _ in space.touched(pruned):
        if attributes.tracked_attribute(s.name) is None:
            keep.setdefault(s.name, []).append((s.dim, torch.nonzero(~pruned[s.classes]).reshape(-1)))
    return keep


def _owns(module: nn.Module, cut: set[int]) -> bool:
    tensors = [*module._parameters.values(), *module._buffers.values()]
    return any(t is not None and id(t) in cut for t in tensors)


def lookup(model: nn.Module, name: str) -> torch.Tensor:
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def outputs(model: nn.Module, inputs: Inputs) -> list[torch.Tensor]:
    """The model's outputs on the example inputs, in eval mode, flattened to a list of tensors."""
    with torch.no_grad(), eval_mode(model):
        return output_tensors(inputs.call(model))


def output_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in output_tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in output_tensors(v)]
    return []


def mismatch(reference: list[torch.Tensor], slim: nn.Module, inputs: Inputs, atol: float) -> str | None:
    """Why ``slim``'s outputs differ from ``reference`` (None if they agree)."""
    try:
        got = outputs(slim, inputs)
    except Exception as err:
        return f"{type(err).__name__}: {first_line(err)}"
    return differ(reference, got, atol)


def differ(reference: list[torch.Tensor], got: list[torch.Tensor], atol: float) -> str | None:
    """How the outputs ``got`` differ from ``reference`` (None if they agree within ``atol``)."""
    if len(got) != len(reference):
        return f"{len(got)} outputs instead of {len(reference)}"
    for i, (r, g) in enumerate(zip(reference, got)):
        if r.shape != g.shape:
            return f"output {i} has shape {tuple(g.shape)} instead of {tuple(r.shape)}"
        if not r.is_floating_point():
            if not torch.equal(r, g):
                return f"output {i} differs"
            continue
        off = outside_tolerance(r, g, atol)
        if off is not None:
            return f"output {i} differs by {off[0]:.3g} (scale {off[1]:.3g})"
    return None


def outside_tolerance(reference: torch.Tensor, got: torch.Tensor, atol: float) -> tuple[float, float] | None:
    """``(max |got − reference|, max |reference|)`` when the first exceeds ``atol`` × the second + 1e-6.

    None when ``got`` is within tolerance: the one output test of construction and of ONNX export.
    """
    reference, got = reference.detach().cpu().double(), got.detach().cpu().double()
    diff = (got - reference).abs().max().item() if reference.numel() else 0.0
    scale = reference.abs().max().item() if reference.numel() else 0.0
    return None if diff <= atol * scale + 1e-6 else (diff, scale)


def culprits(
    space: GroupSpace,
    pruned: torch.Tensor,
    reference: list[torch.Tensor],
    atol: float,
    local: Callable[[int], bool | None] | None = None,
) -> list[int]:
    """Bisect the families with pruned groups down to the ones whose removal breaks the outputs: first
    the families of each kind together (the same layer repeated often breaks in every copy), then
    within the kinds that break; when the first of a kind breaks alone and the others together break
    too, the kind is taken as broken in every copy (one layer's code, repeated) without bisecting it.
    ``local(family)`` answers for a family from the submodule that holds it (None: it cannot), and
    the whole model is probed only for the rest."""
    involved = sorted({int(space.class_family[c]) for c in torch.nonzero(pruned[:-1]).reshape(-1).tolist()})

    def fails(families: list[int]) -> bool:
        chosen = torch.zeros_like(pruned)
        member = torch.zeros(len(space.families), dtype=torch.bool)
        member[families] = True
        chosen[:-1] = pruned[:-1] & member[space.class_family]
        try:
            slim = build(space, chosen, share=True)
        except Exception:
            return True
        return mismatch(reference, slim, space.inputs, atol) is not None

    def search(families: list[int]) -> list[int]:
        if len(families) <= 1:
            return families
        half = len(families) // 2
        found = [f for part in (families[:half], families[half:]) if fails(part) for f in search(part)]
        return found or families

    def within(members: list[int]) -> list[int]:
        if len(members) >= 3 and fails(members[:1]) and fails(members[1:]):
            return members
        return search(members)

    seen = [f for f in involved if local is not None and local(f)]
    rest = [f for f in involved if f not in seen]
    if seen and (not rest or not fails(rest)):
        return seen
    kinds: dict[Any, list[int]] = {}
    for f in rest:
        kinds.setdefault(space.families[f].kind or f, []).append(f)
    if len(kinds) == len(rest):
        return sorted(seen + search(rest))
    found = [f for members in kinds.values() if fails(members) for f in within(members)]
    return sorted(seen + (found or search(rest)))
