"""Probes of one family in the submodule that holds all of it: a block's forward, not the model's.

A family whose every slice (parameters, buffers, tracked sizes) lies inside one submodule changes
nothing outside that submodule when it is cut, so whether cutting it breaks construction shows in
that submodule alone, run on an input it receives in the full model (captured once, in one forward
of the model as it is). In a model of twelve blocks such a probe costs a twelfth of a full one. A
break it cannot see (a size read outside the submodule) is still caught: the construction check
ends every repair with probes of the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .attributes import tracked_attribute
from .construct import build, differ, output_tensors
from .trace import eval_mode

if TYPE_CHECKING:
    from .space import GroupSpace


@dataclass
class Blocks:
    """The submodule that holds each family (None: the whole model), and the one input each such
    submodule receives in a forward of the model (captured at the first probe that needs one, so a
    check with nothing to repair pays nothing); submodules called more than once are left out."""

    holder: list[str | None]
    inputs: dict[str, tuple[tuple, dict[str, Any]]] | None = None

    @classmethod
    def of(cls, space: GroupSpace, captured: Blocks | None = None) -> Blocks:
        """The holders of ``space``'s families, with the inputs ``captured`` for an earlier build of it."""
        return cls(holders(space), captured.inputs if captured is not None else None)

    def prepare(self, space: GroupSpace) -> None:
        """Capture the inputs now, on the model as it is (before the caller zeroes anything)."""
        if self.inputs is None:
            self.inputs = self.capture(space)

    def capture(self, space: GroupSpace) -> dict[str, tuple[tuple, dict[str, Any]]]:
        """One forward of the model with a hook on every holder: the input of each one called once."""
        wanted = {path for path in self.holder if path}
        calls: dict[str, int] = {}
        handles = []
        found: dict[str, tuple[tuple, dict[str, Any]]] = {}

        def hook_for(path: str):
            def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
                calls[path] = calls.get(path, 0) + 1
                found[path] = (args, kwargs)

            return hook

        for path in wanted:
            module = space.model.get_submodule(path)
            handles.append(module.register_forward_pre_hook(hook_for(path), with_kwargs=True))
        try:
            with torch.no_grad(), eval_mode(space.model):
                space.inputs.call(space.model)
        except Exception:
            found.clear()
        finally:
            for handle in handles:
                handle.remove()
        return {path: value for path, value in found.items() if calls[path] == 1}

    def breaks(self, space: GroupSpace, groups: list[int], atol: float) -> bool | None:
        """Whether cutting ``groups`` (zeroed by the caller) breaks the submodule holding them; None
        when no captured submodule holds them all (the caller probes the whole model)."""
        families = {int(f) for f in space.group_family[torch.as_tensor(groups, dtype=torch.long)].tolist()}
        paths = {self.holder[f] for f in families}
        path = paths.pop() if len(paths) == 1 else None
        if path is None:
            return None
        self.prepare(space)
        if path not in self.inputs:
            return None
        args, kwargs = self.inputs[path]
        pruned = space.pruned_classes(torch.as_tensor(groups, dtype=torch.long))
        module = space.model.get_submodule(path)
        with torch.no_grad():
            try:
                slim = build(space, pruned, share=True, root=path)
                with eval_mode(slim):
                    got = output_tensors(slim(*args, **kwargs))
            except Exception:
                return True
            with eval_mode(module):
                reference = output_tensors(module(*args, **kwargs))
        return differ(reference, got, atol) is not None


def holders(space: GroupSpace) -> list[str | None]:
    """Per family, the deepest submodule (not the model itself) whose subtree holds every slice of it."""
    common: list[list[str] | None] = [None] * len(space.families)
    for s in space.slices:
        classes = s.classes[s.classes >= 0]
        if not classes.numel():
            continue
        tracked = tracked_attribute(s.name)
        owner = tracked[0] if tracked is not None else s.name.rpartition(".")[0]
        parts = owner.split(".") if owner else []
        for f in torch.unique(space.class_family[classes]).tolist():
            seen = common[f]
            if seen is None:
                common[f] = parts
            else:
                n = 0
                while n < min(len(seen), len(parts)) and seen[n] == parts[n]:
                    n += 1
                common[f] = seen[:n]
    return [".".join(parts) if parts else None for parts in common]
