"""Measured layer latency against kept channels: a cost that makes group ranking latency-aware.

Removing MACs does not save time in proportion on a CPU: a 3x3 convolution with 8 channels on a
28x28 map does far fewer MACs per millisecond than one with 64 channels on 7x7, so cutting a layer
to a narrow width can save little time. ``LayerLatency`` times each ungrouped Conv/Linear layer on
its own (random data of the layer's input shape at the timing batch size, on one thread) at the
widths a removal would leave, and prices each group by the time its family's next removal saves.
Timings are cached per (layer, in, out) width, so a ranking step only times widths it has not seen,
and with a :class:`TimingCache` on disk across runs. The timer is eager torch by default; a latency
budget on ONNX Runtime passes that runtime's (:mod:`zigprune.deploy.runtimes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..core.space import GroupSpace
from ..core.trace import Inputs, as_inputs, eval_mode
from .layer_ops import LayerOp, LayerTimer, time_torch
from .timing_cache import TimingCache

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
FLOOR_MS = 1e-4


@dataclass(frozen=True)
class _Layer:
    """One timed layer: its module, its op at the timing batch, and the classes of its weight dims."""

    name: str
    module: nn.Module
    op: LayerOp
    out_classes: torch.Tensor | None
    in_classes: torch.Tensor | None


class LayerLatency:
    """Per-group latency cost of ``space``'s model, from layers timed at the widths pruning leaves.

    ``batch`` and ``threads`` should match how the slim model will be timed or served; ``repeats``
    calls per width (after one warm-up) are timed and the fastest is kept, the least noisy figure.
    ``round_to`` is the selection's width rounding: a family's next removal brings its kept width
    down to the next multiple of it. ``timer`` times one layer (eager torch by default); ``runtime``
    names it in the keys of ``cache``, which keeps timings across runs. ``relative``: every narrower
    width is timed right after the layer's full width and kept as that ratio of the full width's
    entry, so entries timed minutes apart agree on a machine whose speed drifts (twice the timing).
    """

    def __init__(
        self,
        space: GroupSpace,
        batch: int = 64,
        threads: int = 1,
        repeats: int = 5,
        round_to: int = 1,
        *,
        timer: LayerTimer = time_torch,
        runtime: str = "torch",
        cache: TimingCache | None = None,
        relative: bool = False,
    ) -> None:
        if min(batch, threads, repeats, round_to) < 1:
            raise ValueError("batch, threads, repeats and round_to must be positive")
        self.space = space
        self.threads = threads
        self.repeats = repeats
        self.round_to = round_to
        self.timer = timer
        self.runtime = runtime
        self.cache = cache
        self.relative = relative
        self.layers = _layers(space, batch)
        self._touching = {
            family.index: [
                layer for layer in self.layers if _touches(layer, space.group_class[family.groups])
            ]
            for family in space.families
            if family.groups
        }
        self._cache: dict[str, float] = {}

    def __call__(self, taken: torch.Tensor) -> torch.Tensor:
        """Per group: ms its family saves by its next removal, shared by the groups removed (>= FLOOR_MS)."""
        kept = self.space.kept_classes(taken)
        weight = torch.full((self.space.num_groups,), FLOOR_MS, dtype=torch.float64)
        gone = taken.tolist()
        before = {layer.name: self._time(layer, *self._widths(layer, kept)) for layer in self.layers}
        for family in self.space.families:
            free = [g for g in family.groups if not gone[g]]
            width = family.width - (len(family.groups) - len(free))
            unit = self.round_to // math.gcd(self.round_to, family.channels)
            step = width - (width - 1) // unit * unit
            if len(free) <= step:
                continue
            trial = kept.clone()
            trial[self.space.group_class[free[:step]]] = False
            saved = sum(
                before[layer.name] - self._time(layer, *self._widths(layer, trial))
                for layer in self._touching[family.index]
            )
            weight[free] = max(saved / step, FLOOR_MS)
        return weight

    def estimate_ms(self, taken: torch.Tensor | None = None) -> float:
        """Summed time of the timed layers after removing ``taken`` (all groups kept when None)."""
        return sum(self.times(taken).values())

    def times(self, taken: torch.Tensor | None = None, names: set[str] | None = None) -> dict[str, float]:
        """Each timed layer's ms (only those in ``names`` when given) after removing ``taken``."""
        kept = self.space.kept_classes(taken)
        chosen = [layer for layer in self.layers if names is None or layer.name in names]
        return {layer.name: self._time(layer, *self._widths(layer, kept)) for layer in chosen}

    @staticmethod
    def _widths(layer: _Layer, kept: torch.Tensor) -> tuple[int, int]:
        """Kept (in, out) channels; positions with no channel identity (class -1) always stay."""
        shape = layer.module.weight.shape
        cin = shape[1] if layer.in_classes is None else int(kept[layer.in_classes].sum())
        cout = shape[0] if layer.out_classes is None else int(kept[layer.out_classes].sum())
        return int(cin), int(cout)

    def _time(self, layer: _Layer, cin: int, cout: int) -> float:
        """The layer's op at ``cin`` -> ``cout``: timed once for every layer of the same shape (0 for an
        empty layer), from the disk cache when it holds it."""
        if cin < 1 or cout < 1:
            return 0.0
        key = f"{self.runtime} t{self.threads} {layer.op.key(cin, cout)}"
        if key not in self._cache:
            known = self.cache.get(key) if self.cache is not None else None
            if known is None:
                known = self._timed(layer, cin, cout)
                if self.cache is not None:
                    self.cache.put(key, known)
            self._cache[key] = known
        return self._cache[key]

    def _timed(self, layer: _Layer, cin: int, cout: int) -> float:
        """The op timed now at ``cin`` -> ``cout``; with ``relative``, against its full width timed in
        the same breath, scaled to the full width's entry."""
        full = (int(layer.module.weight.shape[1]), int(layer.module.weight.shape[0]))
        if not self.relative or (cin, cout) == full:
            return self.timer(layer.op, cin, cout, self.threads, self.repeats)
        now = self.timer(layer.op, *full, self.threads, self.repeats)
        ms = self.timer(layer.op, cin, cout, self.threads, self.repeats)
        return ms / max(now, 1e-12) * self._time(layer, *full)


def _layers(space: GroupSpace, batch: int) -> list[_Layer]:
    """Every ungrouped Conv/Linear module the example reaches, with its input shape at ``batch``."""
    model = space.model
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, LAYERS) and getattr(module, "groups", 1) == 1
    ]
    inputs = as_inputs(space.inputs)
    try:
        with torch.no_grad(), eval_mode(model):
            inputs.call(model)
    finally:
        for handle in handles:
            handle.remove()
    slices = {(s.name, s.dim): s.classes for s in space.slices}
    modules = dict(model.named_modules())
    example_batch = _batch_of(inputs)
    layers = []
    for name, shape in shapes.items():
        scaled = (batch * shape[0] // example_batch if example_batch else shape[0], *shape[1:])
        out_classes = slices.get((f"{name}.weight", 0))
        in_classes = slices.get((f"{name}.weight", 1))
        if out_classes is not None or in_classes is not None:
            op = LayerOp.of(modules[name], scaled)
            layers.append(_Layer(name, modules[name], op, out_classes, in_classes))
    return layers


def _touches(layer: _Layer, classes: torch.Tensor) -> bool:
    """Whether the layer's input or output channels include any of ``classes``."""
    return any(
        c is not None and bool(torch.isin(c, classes).any()) for c in (layer.in_classes, layer.out_classes)
    )


def _batch_of(inputs: Inputs) -> int:
    """The leading size of the first tensor among the example inputs (0 when there is none)."""
    tensors = inputs.tensors()
    return int(tensors[0].shape[0]) if tensors and tensors[0].dim() else 0
