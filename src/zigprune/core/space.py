"""GroupSpace: the zero-invariant groups of one model, their families, costs and reasons.

A *group* is one removable channel (or head): the slices of every parameter that must be exactly
zero together for it to contribute nothing. Groups that share a parameter dim form a *family*
(e.g. every conv feeding one residual stream). Channels that can never be removed are still
listed, per family, with the reason.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .components import components
from .construct import construct
from .group_values import GroupValues
from .segments import Segments
from .store import Store
from .summary import summary
from .trace import Inputs, batch_size

if TYPE_CHECKING:
    from .blocks import Blocks
    from .check import CheckReport


@dataclass
class Slice:
    """One parameter/buffer dim that groups cut: the channel class of each position (-1: none)."""

    name: str
    dim: int
    classes: torch.Tensor
    producer: bool


@dataclass
class Piece:
    """Part of a family that the same layers produce: a whole family, or one input of a ``torch.cat``
    (``width`` classes, the prunable ones ``groups``). Widths are rounded and floored per piece."""

    width: int
    groups: list[int]


@dataclass
class Family:
    """Coupled channels sharing parameter dims; ``groups`` are the prunable ones.

    ``channels``: how many positions of every parameter dim it cuts one group spans (an attention
    head: its head size; a conv channel: 1), so a width rounded to N channels may take any number of
    heads of a size that N divides. ``pieces``: the family split by the layers that produce it (one
    piece per concatenated input; a single piece otherwise).
    """

    index: int
    name: str
    width: int
    groups: list[int]
    reasons: dict[str, int] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    channels: int = 1
    pieces: list[Piece] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pieces:
            self.pieces = [Piece(self.width, list(self.groups))]

    @property
    def prunable(self) -> bool:
        return bool(self.groups)

    @property
    def kind(self) -> tuple[str, int, int] | None:
        """The kind of layer: the first module's path with layer numbers hidden (``encoder.layer.#.
        intermediate.dense``), the width and the channels per group; families repeated across layers
        share it. None for a family no module produces."""
        if not self.modules:
            return None
        return re.sub(r"(?<=\.)\d+(?=\.|$)", "#", self.modules[0]), self.width, self.channels


@dataclass
class CostRecord:
    """MACs of one op per sample and the class vectors whose kept fraction scales them."""

    macs: float
    factors: list[torch.Tensor]


@dataclass
class HeadInfo:
    """An attention op's module and the class of each query and key/value head."""

    module: str
    q_classes: torch.Tensor
    kv_classes: torch.Tensor


class GroupSpace(GroupValues):
    """The zero-invariant groups of ``model`` (see module docstring); built by :func:`zigprune.analyze`."""

    #: What analyze's construction check changed (a ``core.check.CheckReport``); None without the check.
    check: CheckReport | None = None
    #: Set by a targeted optimizer (HESSO, DHSPG): why its target is not met yet, or None; read by construct.
    shortfall: Callable[[], str | None] | None = None
    #: During the construction check: the submodule inputs its probes of one family use (``core.blocks``).
    blocks: Blocks | None = None

    def __init__(self, model: nn.Module, inputs: Inputs, store: Store, root: torch.Tensor) -> None:
        self.model = model
        self.inputs = inputs
        self._build(store, root)

    def _build(self, store: Store, root: torch.Tensor) -> None:
        keys = list(store.pdims)
        roots = [root[store.pdims[k]] for k in keys]
        unique = torch.unique(torch.cat(roots)) if roots else torch.empty(0, dtype=torch.long)
        class_of_root = torch.full((max(store.count, 1),), -1, dtype=torch.long)
        class_of_root[unique] = torch.arange(unique.numel())
        num_classes = unique.numel()
        self.class_root = unique

        def classes_of(ids: torch.Tensor) -> torch.Tensor:
            ids = ids.reshape(-1)
            return torch.where(ids >= 0, class_of_root[root[ids.clamp(min=0)]], ids)

        reasons: list[str] = []
        reason_of = torch.full((num_classes,), -1, dtype=torch.long)
        for ids, reason in store.poisoned:
            cls = classes_of(ids)
            cls = cls[cls >= 0]
            fresh = cls[reason_of[cls] < 0]
            if fresh.numel():
                reasons.append(reason)
                reason_of[fresh] = len(reasons) - 1
        producer = torch.zeros(num_classes, dtype=torch.bool)
        self.slices: list[Slice] = []
        for key, r in zip(keys, roots):
            cls = class_of_root[r]
            is_producer = key in store.producers
            if is_producer:
                producer[cls] = True
            self.slices.append(Slice(key[0], key[1], cls, is_producer))
        prunable = producer & (reason_of < 0)
        self.num_classes = num_classes
        self.class_group = torch.where(prunable, prunable.long().cumsum(0) - 1, -1)
        self.num_groups = int(prunable.sum())
        self.group_class = torch.nonzero(prunable).reshape(-1)
        self.zeroed = torch.zeros(self.num_groups, dtype=torch.bool)
        self._families(reasons, reason_of, producer)
        self._costs(store, classes_of)
        self.heads = [HeadInfo(h.module, classes_of(h.q_heads), classes_of(h.kv_heads)) for h in store.heads]

    def _families(self, reasons: list[str], reason_of: torch.Tensor, producer: torch.Tensor) -> None:
        a = [s.classes for s in self.slices]
        b = [s.classes[:1].expand_as(s.classes) for s in self.slices]
        fam_root = components(self.num_classes, torch.cat(a), torch.cat(b)) if a else torch.arange(0)
        ndims = {name: p.dim() for name, p in self.model.named_parameters()}
        order: dict[int, int] = {}
        modules: list[list[str]] = []
        firsts: list[Slice] = []
        for s in self.slices:
            r = int(fam_root[s.classes[0]])
            if r not in order:
                order[r] = len(order)
                modules.append([])
                firsts.append(s)
            module = s.name.rpartition(".")[0] or s.name
            if s.producer and module not in modules[order[r]] and ndims.get(s.name, 0) >= 2:
                modules[order[r]].append(module)
        index = torch.tensor([order[int(r)] for r in fam_root.tolist()], dtype=torch.long)
        self.class_family = index
        spans = self._spans(index, len(modules))
        signature = self._producers()
        self.families: list[Family] = []
        for f, (mods, first) in enumerate(zip(modules, firsts)):
            members = torch.nonzero(index == f).reshape(-1)
            groups = self.class_group[members]
            why = Counter(reasons[int(r)] for r in reason_of[members].tolist() if r >= 0)
            passive = int((~producer[members]).sum())
            if passive and not why:
                why["no parameter produces these channels (model inputs)"] = passive
            name = self._family_name(mods, first)
            kept = groups[groups >= 0].tolist()
            family = Family(f, name, int(members.numel()), kept, dict(why), mods, spans[f])
            family.pieces = self._pieces(members, signature)
            self.families.append(family)
        self.group_family = index[self.group_class] if self.num_groups else torch.empty(0, dtype=torch.long)

    def _producers(self) -> torch.Tensor:
        """Per class, a signature of the producer slices that hold it: a sum of one random 40-bit key
        per slice, so classes held by the same slices (and, but for a 2⁻⁴⁰ chance, only they) match."""
        signature = torch.zeros(self.num_classes, dtype=torch.long)
        keys = torch.randint(1, 2**40, (len(self.slices),), generator=torch.Generator().manual_seed(0))
        for i, s in enumerate(self.slices):
            if s.producer:
                held = torch.unique(s.classes[s.classes >= 0])
                signature.index_add_(0, held, keys[i].expand(held.numel()))
        return signature

    def _pieces(self, members: torch.Tensor, signature: torch.Tensor) -> list[Piece]:
        """The family's classes split by the producer slices that hold them (a concat's inputs), in the
        order of their first class."""
        keys, piece = torch.unique(signature[members], return_inverse=True)
        if keys.numel() == 1:
            return [Piece(int(members.numel()), [g for g in self.class_group[members].tolist() if g >= 0])]
        split: dict[int, list[int]] = {}
        for c, p in zip(members.tolist(), piece.tolist()):
            split.setdefault(p, []).append(c)
        return [Piece(len(c), [g for g in self.class_group[c].tolist() if g >= 0]) for c in split.values()]

    def _spans(self, class_family: torch.Tensor, count: int) -> list[int]:
        """Per family, the positions one class spans in each slice of it, when every class spans the
        same number there (the gcd over its slices; 1 when they differ)."""
        spans = [0] * count
        for s in self.slices:
            if not s.classes.numel():
                continue
            repeats = torch.unique(torch.unique(s.classes, return_counts=True)[1])
            f = int(class_family[s.classes[0]])
            spans[f] = math.gcd(spans[f], int(repeats[0]) if repeats.numel() == 1 else 1)
        return [span or 1 for span in spans]

    def _family_name(self, modules: list[str], first: Slice) -> str:
        """``layer1.0.conv1``, ``conv1 (+6)`` for a family shared by seven weight layers, ``3 (Conv2d)``.

        A path ending in a container index (``nn.Sequential``'s ``3``) says nothing alone, so the
        module's type is added to it.
        """
        if not modules:
            return f"{first.name} (dim {first.dim})"
        notes = []
        if modules[0].rpartition(".")[2].isdigit():
            with contextlib.suppress(AttributeError):
                notes.append(type(self.model.get_submodule(modules[0])).__name__)
        if len(modules) > 1:
            notes.append(f"+{len(modules) - 1}")
        return f"{modules[0]} ({', '.join(notes)})" if notes else modules[0]

    def _costs(self, store: Store, classes_of: Any) -> None:
        self.group_params = torch.zeros(self.num_groups, dtype=torch.long)
        shapes = {**{n: p.shape for n, p in self.model.named_parameters()}, **dict(self._buffer_shapes())}
        for s in self.slices:
            shape = shapes.get(s.name)
            if shape is None:
                continue
            per_position = int(torch.Size(shape).numel() // shape[s.dim])
            groups = self.class_group[s.classes]
            ok = groups >= 0
            self.group_params.index_add_(
                0, groups[ok], torch.full((int(ok.sum()),), per_position, dtype=torch.long)
            )
        batch = batch_size(self.inputs)
        self.costs = [CostRecord(r.macs / batch, [classes_of(f) for f in r.factors]) for r in store.macs]
        self.total_macs = round(sum(r.macs for r in self.costs))
        self.group_macs = torch.zeros(self.num_groups, dtype=torch.float64)
        for r in self.costs:
            for f in r.factors:
                groups = self.class_group[f[f >= 0]]
                groups = groups[groups >= 0]
                if groups.numel():
                    self.group_macs.index_add_(0, groups, torch.full((groups.numel(),), r.macs / f.numel(),
                                                                     dtype=torch.float64))  # fmt: skip

    def _buffer_shapes(self) -> Iterable[tuple[str, torch.Size]]:
        return ((n, b.shape) for n, b in self.model.named_buffers())

    def drop_families(self, families: Iterable[int], reason: str) -> None:
        """Mark whole families unprunable (e.g. when the construction check fails for them)."""
        dropped = torch.zeros(len(self.families), dtype=torch.bool)
        dropped[list(families)] = True
        keep = ~dropped[self.group_family] if self.num_groups else torch.zeros(0, dtype=torch.bool)
        new_index = torch.where(keep, keep.long().cumsum(0) - 1, -1)
        self.class_group = torch.where(self.class_group >= 0, new_index[self.class_group.clamp(min=0)], -1)
        self.group_class = self.group_class[keep]
        self.group_family = self.group_family[keep]
        self.group_params = self.group_params[keep]
        self.group_macs = self.group_macs[keep]
        self.zeroed = self.zeroed[keep]
        self.num_groups = int(keep.sum())
        for family in self.families:
            if dropped[family.index]:
                family.reasons[reason] = family.reasons.get(reason, 0) + len(family.groups)
                family.groups = []
            else:
                family.groups = [int(new_index[g]) for g in family.groups]
            for piece in family.pieces:
                piece.groups = [int(new_index[g]) for g in piece.groups if not dropped[family.index]]

    # -- costs ----------------------------------------------------------------------------------------------

    @cached_property
    def _slice_index(self) -> tuple[list[Slice], Segments]:
        """The non-empty slices and their classes laid end to end, to test them all in one pass."""
        live = [s for s in self.slices if s.classes.numel()]
        return live, Segments.of([s.classes for s in live])

    @cached_property
    def _factor_index(self) -> tuple[Segments, torch.Tensor, torch.Tensor]:
        """Every cost factor's classes laid end to end, the record each factor scales, each record's MACs."""
        factors = [(i, f) for i, r in enumerate(self.costs) for f in r.factors if f.numel()]
        record = torch.tensor([i for i, _ in factors], dtype=torch.long)
        macs = torch.tensor([r.macs for r in self.costs], dtype=torch.float64)
        return Segments.of([f for _, f in factors]), record, macs

    def pruned_classes(self, groups: torch.Tensor | None) -> torch.Tensor:
        """Bool mask over classes (plus a trailing 'none' slot) that removing ``groups`` cuts.

        A group whose removal would leave some parameter dim empty is kept (it is zero anyway), so
        every layer keeps at least one channel. Emptied dims are found for all slices at once; only
        those are revisited one by one, in slice order.
        """
        pruned = torch.zeros(self.num_classes + 1, dtype=torch.bool)
        pruned[self.group_class[self._as_ids(groups)]] = True
        live, index = self._slice_index
        changed = True
        while changed:
            changed = False
            for i in torch.nonzero(index.count(pruned) == index.sizes).reshape(-1).tolist():
                classes = live[i].classes
                if bool(pruned[classes].all()):
                    pruned[classes[0]] = False
                    changed = True
        return pruned

    def kept_classes(self, pruned_groups: torch.Tensor | None) -> torch.Tensor:
        return ~self.pruned_classes(pruned_groups)

    def macs(self, pruned_groups: torch.Tensor | None = None) -> int:
        """MACs per sample of matmul/conv/attention left after removing ``pruned_groups`` (mask or ids)."""
        kept = self.kept_classes(pruned_groups)
        index, record, macs = self._factor_index
        kept_share = index.count(kept, torch.float64) / index.sizes
        shares = torch.ones(len(macs), dtype=torch.float64).scatter_reduce_(
            0, record, kept_share, reduce="prod"
        )
        return round(float((macs * shares).sum()))

    def params(self, pruned_groups: torch.Tensor | None = None) -> int:
        """Parameter count left after removing ``pruned_groups`` (bool mask or ids)."""
        kept = self.kept_classes(pruned_groups)
        cut: dict[str, list[torch.Tensor]] = {}
        for s in self.slices:
            cut.setdefault(s.name, []).append((s.dim, kept[s.classes]))
        total = 0
        for name, p in self.model.named_parameters():
            shape = list(p.shape)
            for dim, mask in cut.get(name, []):
                shape[dim] = int(mask.sum())
            total += int(torch.Size(shape).numel())
        return total

    def _as_ids(self, groups: torch.Tensor | None) -> torch.Tensor:
        if groups is None:
            return torch.empty(0, dtype=torch.long)
        groups = torch.as_tensor(groups)
        return torch.nonzero(groups).reshape(-1) if groups.dtype == torch.bool else groups.long()

    # -- construction and reporting ------------------------------------------------------------------------

    def construct(self, check: bool = True, atol: float = 1e-4) -> nn.Module:
        """A new, smaller module without the all-zero groups; the original is untouched.

        With ``check`` the slim model is run on the example inputs and must match the full model
        (max abs difference ≤ ``atol`` × output scale), or :class:`ConstructionError` names the family.
        Warns when a targeted optimizer on this space had not finished its schedule (``shortfall``).
        """
        why = self.shortfall() if self.shortfall is not None else None
        if why:
            warnings.warn(f"zigprune: {why}", stacklevel=2)
        return construct(self, check=check, atol=atol)

    def summary(self, max_rows: int = 40) -> str:
        """A table of families: width, prunable groups, MACs share, and why the rest cannot go."""
        return summary(self, max_rows)

    def __repr__(self) -> str:
        prunable = sum(f.prunable for f in self.families)
        return (
            f"GroupSpace({type(self.model).__name__}: {self.num_groups} prunable groups in {prunable} of "
            f"{len(self.families)} families)"
        )
