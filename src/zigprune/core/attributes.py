"""Rewrite module attributes (channels, features, groups, heads) after their parameters were sliced.

One small updater per module type, looked up by class (or class name for Hugging Face's ``Conv1D``),
so that the slim model's own ``forward`` keeps working at any batch size or sequence length.

Sizes a module keeps as plain Python attributes and passes to ops in its ``forward``
(``torch.split(x, self.width, 1)``, ``F.conv2d(x, self.filt, groups=self.channels)``) are
*tracked*: the rule of the op that reads such a size records which channel positions it counts
(:meth:`zigprune.core.store.Store.track`), and :func:`rewrite_tracked` sets the attribute to the
number of those positions the slim model keeps. Tracking records live among the space's slices as
pseudo slices named by :func:`attribute_slice`; they own no tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

Updater = Callable[[nn.Module, nn.Module], None]
UPDATERS: dict[type | str, Updater] = {}


def updater(*kinds: type | str) -> Callable[[Updater], Updater]:
    def deco(fn: Updater) -> Updater:
        for kind in kinds:
            UPDATERS[kind] = fn
        return fn

    return deco


def _updater_of(module: nn.Module) -> Updater | None:
    for kind in type(module).__mro__:
        fn = UPDATERS.get(kind) or UPDATERS.get(kind.__name__)
        if fn is not None:
            return fn
    return None


def update(old: nn.Module, new: nn.Module) -> None:
    """Make ``new``'s attributes agree with its (already sliced) parameters; ``old`` is the original."""
    fn = _updater_of(new)
    if fn is not None:
        fn(old, new)


ATTRIBUTE_SLICE = "attribute:"


def attribute_slice(module: str, name: str) -> str:
    """The pseudo slice that counts the positions behind attribute ``name`` of the module at ``module``."""
    return f"{ATTRIBUTE_SLICE}{module}:{name}"


def tracked_attribute(slice_name: str) -> tuple[str, str] | None:
    """``(module path, attribute)`` of a pseudo slice made by :func:`attribute_slice`; None for a tensor."""
    if not slice_name.startswith(ATTRIBUTE_SLICE):
        return None
    module, _, name = slice_name[len(ATTRIBUTE_SLICE) :].rpartition(":")
    return module, name


def size_attributes(module: nn.Module) -> dict[str, int | tuple[int, ...]]:
    """The int and int-tuple attributes of ``module`` that tracking may rewrite.

    Modules with an updater are left out: their updater already owns their size attributes (a
    ``Conv2d`` passes ``self.groups`` to the conv op it calls).
    """
    if _updater_of(module) is not None:
        return {}
    found: dict[str, int | tuple[int, ...]] = {}
    for name, value in vars(module).items():
        if _is_int(value):
            found[name] = value
        elif isinstance(value, tuple | list) and value and all(_is_int(v) for v in value):
            found[name] = tuple(value)
    return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rewrite_tracked(
    model: nn.Module, slim: nn.Module, slices: Iterable[Any], pruned: torch.Tensor, root: str = ""
) -> None:
    """Set every tracked attribute of ``slim`` to the number of its positions that are kept.

    A tuple attribute is tracked element by element (the slice's ``dim`` is the element index);
    elements no op tracked keep their value. ``root``: ``model`` and ``slim`` are that submodule of
    the analysed model (attributes outside it are left alone).
    """
    prefix = f"{root}." if root else ""
    kept: dict[tuple[str, str], dict[int, int]] = {}
    for s in slices:
        owner = tracked_attribute(s.name)
        if owner is not None and (not root or owner[0] == root or owner[0].startswith(prefix)):
            path = owner[0][len(prefix) :] if owner[0] != root else ""
            kept.setdefault((path, owner[1]), {})[s.dim] = int((~pruned[s.classes]).sum())
    for (path, name), counts in kept.items():
        old = getattr(model.get_submodule(path), name)
        new = counts[0] if _is_int(old) else type(old)(counts.get(i, v) for i, v in enumerate(old))
        setattr(slim.get_submodule(path), name, new)


@updater(nn.Linear)
def _linear(old: nn.Linear, new: nn.Linear) -> None:
    new.out_features, new.in_features = new.weight.shape


@updater(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(old: nn.Module, new: nn.Module) -> None:
    _grouped(old, new, "out_channels", "in_channels")


@updater(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(old: nn.Module, new: nn.Module) -> None:
    _grouped(old, new, "in_channels", "out_channels")


def _grouped(old: nn.Module, new: nn.Module, first: str, second: str) -> None:
    """Channel counts and groups of a (transposed) conv: weight dim 0 holds ``first``, dim 1 one group's
    share of ``second``; the group size along ``first`` is kept, so the group count follows the cut."""
    size = new.weight.shape[0]
    if old.groups > 1:
        new.groups = size // (getattr(old, first) // old.groups)
    setattr(new, first, size)
    setattr(new, second, new.weight.shape[1] * new.groups)


@updater(nn.modules.batchnorm._NormBase)
def _norm(old: nn.Module, new: nn.Module) -> None:
    source = new.weight if new.weight is not None else new.running_mean
    if source is not None:
        new.num_features = source.shape[0]


@updater(nn.GroupNorm)
def _group_norm(old: nn.GroupNorm, new: nn.GroupNorm) -> None:
    if new.weight is not None:
        new.num_channels = new.weight.shape[0]
        new.num_groups = new.num_channels // (old.num_channels // old.num_groups)


@updater(nn.LayerNorm, nn.RMSNorm)
def _layer_norm(old: nn.Module, new: nn.Module) -> None:
    if new.weight is not None:
        new.normalized_shape = tuple(new.weight.shape)


@updater(nn.Embedding)
def _embedding(old: nn.Embedding, new: nn.Embedding) -> None:
    new.num_embeddings, new.embedding_dim = new.weight.shape


@updater(nn.PReLU)
def _prelu(old: nn.PReLU, new: nn.PReLU) -> None:
    new.num_parameters = new.weight.numel()


@updater("Conv1D")
def _hf_conv1d(old: nn.Module, new: nn.Module) -> None:
    new.nx, new.nf = new.weight.shape


HEAD_COUNT_WORDS = ("head",)
KV_WORDS = ("key_value", "kv")
INNER_SIZE_NAMES = (
    "all_head_size", "split_size", "inner_dim", "embed_dim", "inner_size", "proj_size", "attn_dim", "dim_out",
)  # fmt: skip


def update_heads(module: nn.Module, heads: int, kv_heads: int, new_heads: int, new_kv_heads: int) -> None:
    """Rewrite head counts (and sizes that are a head count times the head size) on an attention module."""
    head_dim = _head_dim(module)
    for name, value in list(vars(module).items()):
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        lower = name.lower()
        if any(w in lower for w in HEAD_COUNT_WORDS) and "dim" not in lower and "size" not in lower:
            if any(w in lower for w in KV_WORDS) and value == kv_heads:
                setattr(module, name, new_kv_heads)
            elif value == heads:
                setattr(module, name, new_heads)
        elif head_dim and name in INNER_SIZE_NAMES and value == heads * head_dim:
            setattr(module, name, new_heads * head_dim)


def _head_dim(module: nn.Module) -> int | None:
    for name in ("head_dim", "attention_head_size", "head_size", "d_kv", "dim_head"):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return value
    return None
