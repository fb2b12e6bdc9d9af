"""Sizes that ``forward`` code reads from module attributes, found and tracked for construction.

``torch.export`` bakes Python numbers into the graph, so the ``self.width`` of
``torch.split(x, self.width, 1)`` or the ``self.channels`` of ``F.conv2d(x, w, groups=self.channels)``
reaches a rule as a plain int. The module whose ``forward`` called the op is on the node, so its
int (or int-tuple) attributes equal to that number are the ones that can hold it; a rule tracks
each with the channel positions the size counts (:meth:`Store.track`), and construction rewrites
it to the number of those positions it keeps.

What is handled: attributes of the calling module itself (not of its parents, not globals or
closures), equal to the size an op reads. Modules with an updater are left to it. What is not:
a size computed outside the module, or one that only equals an attribute by arithmetic (a split
size ``self.dim // 3`` is found only if another attribute holds that value or the split's total).
An unrelated attribute that happens to hold the same number is rewritten too: the construction
check sees it if that changes the outputs.
"""

from __future__ import annotations

import torch

from .registry import Ctx


def module_path(node: torch.fx.Node) -> str:
    """Path of the innermost module whose ``forward`` called this op ("" for the model itself)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _ = list(stack.values())[-1]
    return path


def matching(ctx: Ctx, value: int | tuple[int, ...]) -> list[str]:
    """Attributes of the op's module equal to ``value`` (an int, or a tuple of ints)."""
    found = ctx.store.size_attributes(module_path(ctx.node))
    return [name for name, held in found.items() if held == value]


def track(ctx: Ctx, names: list[str], ids: torch.Tensor, index: int = 0) -> None:
    """Tracked attributes ``names`` of the op's module count positions ``ids`` (element ``index``)."""
    path = module_path(ctx.node)
    for name in names:
        ctx.store.track(path, name, ids, index)
