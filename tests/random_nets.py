"""Random small conv networks for property tests and the post-training fuzz benchmark.

A hypothesis strategy draws a *spec* (a tuple of nodes, each reading earlier nodes) and
:class:`FuzzNet` interprets it: conv2d (dense, grouped, depthwise), BatchNorm2d, activations
(some with f(0) != 0), residual adds (optionally through a 1x1 projection), channel concat,
gating products (sigmoid, plain, squeeze-excitation style), learned per-channel scales, equal channel
halves (chunk/split) and dropout, at any spatial size; with ``shape_reads``, also a Linear over
channels whose output is reshaped to a channel count read from another tensor's shape. Every node
nobody reads is globally average-pooled, concatenated and fed to a head of optional LayerNorm,
hidden Linear and dropout, then a Linear. ``width`` scales every drawn channel count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

IN_CHANNELS, SIZE, NUM_OUT = 3, 8, 5
MAX_NODES = 8
MAX_CAT = 16
ACTS = ("relu", "silu", "gelu", "tanh", "sigmoid", "leaky_relu", "hardswish", "identity")
OPS = ("conv", "bn", "act", "add", "cat", "mul", "chunk", "dropout", "scale")


# -- spec -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One op reading earlier nodes (0 is the input); ``out`` is its channel count."""

    op: str
    srcs: tuple[int, ...]
    out: int
    kernel: int = 1  # conv
    groups: int = 1  # conv
    bias: bool = False  # conv, and the 1x1 projection of add/mul
    act: str = "identity"  # act
    proj: bool = False  # add/mul: second operand goes through a 1x1 conv
    gate: str = "sigmoid"  # mul: "sigmoid" (x * sigmoid(y)), "plain" (x * y), "se" (x * sigmoid(mean_hw(y)))
    half: int = 0  # chunk: which half
    split: bool = False  # chunk: torch.split instead of Tensor.chunk
    p: float = 0.0  # dropout
    shape_of: int = 0  # shaperead: the node whose channel count the reshape reads


@dataclass(frozen=True)
class Head:
    """Pooling, then optional LayerNorm over channels, optional hidden Linear + act, dropout, Linear(5).

    ``grid`` k > 0: each sink is average-pooled to k x k positions, each a feature, instead of one,
    so that a shallow net keeps roughly where things are (what a classifier of small images needs).
    """

    mean: bool  # x.mean((2, 3)) instead of adaptive_avg_pool2d + flatten
    layer_norm: bool
    hidden: int  # 0: none
    act: str
    dropout: bool
    grid: int = 0


@dataclass(frozen=True)
class Spec:
    nodes: tuple[Node, ...]
    head: Head
    in_channels: int = IN_CHANNELS


def channels(spec: Spec) -> list[int]:
    return [spec.in_channels, *(n.out for n in spec.nodes)]


def sinks(spec: Spec) -> list[int]:
    """Nodes that no later node reads: they all feed the head."""
    read = {s for n in spec.nodes for s in n.srcs}
    return [i for i in range(1, len(spec.nodes) + 1) if i not in read]


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


def _src(draw: st.DrawFn, chans: list[int], allow_input: bool) -> int:
    """An earlier node, shrinking towards the most recent one; the input only where ``allow_input``."""
    lowest = 0 if allow_input else 1
    return len(chans) - 1 - draw(st.integers(0, len(chans) - 1 - lowest))


@st.composite
def node_spec(draw: st.DrawFn, chans: list[int], shape_reads: bool = False, width: int = 1) -> Node:
    """One node over the earlier nodes' channel counts ``chans`` (index 0: the input); drawn channel
    counts are multiplied by ``width``."""
    even = [i for i, c in enumerate(chans) if i > 0 and c % 2 == 0]
    ops = [op for op in OPS if op != "chunk" or even] + (["shaperead"] * 2 if shape_reads else [])
    op = draw(st.sampled_from(ops))
    if op == "shaperead":
        s = _src(draw, chans, allow_input=False)
        same = [t for t, c in enumerate(chans) if t > 0 and c == chans[s]]
        return Node(op, (s,), chans[s], shape_of=draw(st.sampled_from(same)))
    if op == "conv":
        s = _src(draw, chans, allow_input=True)
        cin = chans[s]
        kernel, bias = draw(st.sampled_from([1, 3])), draw(st.booleans())
        mode = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
        if mode == "depthwise" and cin > 1:
            return Node(op, (s,), cin * draw(st.integers(1, max(1, 12 * width // cin))), kernel, cin, bias)
        if mode == "grouped" and _divisors(cin):
            g = draw(st.sampled_from(_divisors(cin)))
            return Node(op, (s,), g * draw(st.integers(1, max(1, 12 * width // g))), kernel, g, bias)
        return Node(op, (s,), draw(st.integers(2, 12)) * width, kernel, 1, bias)
    if op in ("bn", "act", "dropout", "scale"):
        s = _src(draw, chans, allow_input=op == "scale")
        act = draw(st.sampled_from(ACTS)) if op == "act" else "identity"
        p = draw(st.sampled_from([0.1, 0.5])) if op == "dropout" else 0.0
        return Node(op, (s,), chans[s], act=act, p=p)
    if op in ("add", "mul"):
        a, b = _src(draw, chans, allow_input=False), _src(draw, chans, allow_input=False)
        proj = chans[a] != chans[b] or draw(st.booleans())
        gate = draw(st.sampled_from(["sigmoid", "plain", "se"])) if op == "mul" else "sigmoid"
        return Node(op, (a, b), chans[a], proj=proj, bias=proj and draw(st.booleans()), gate=gate)
    if op == "cat":
        srcs: list[int] = []
        for _ in range(draw(st.integers(2, 3))):
            s = _src(draw, chans, allow_input=True)
            if sum(chans[t] for t in srcs) + chans[s] <= MAX_CAT * width:
                srcs.append(s)
        if len(srcs) > 1:
            return Node(op, tuple(srcs), sum(chans[s] for s in srcs))
        return Node("act", (srcs[0],), chans[srcs[0]])
    s = even[-1 - draw(st.integers(0, len(even) - 1))]
    return Node(op, (s,), chans[s] // 2, half=draw(st.integers(0, 1)), split=draw(st.booleans()))


@st.composite
def specs(
    draw: st.DrawFn,
    shape_reads: bool = False,
    width: int = 1,
    in_channels: int = IN_CHANNELS,
    grid: int = 0,
) -> Spec:
    """A stem conv on the input, then up to ``MAX_NODES - 1`` random nodes, then the head (pooling to
    a ``grid`` x ``grid`` grid when it is above 0, see :class:`Head`)."""
    stem_out = draw(st.integers(2, 12)) * width
    stem = Node("conv", (0,), stem_out, draw(st.sampled_from([1, 3])), 1, draw(st.booleans()))
    chans = [in_channels, stem.out]
    nodes = [stem]
    for _ in range(draw(st.integers(0, MAX_NODES - 1))):
        node = draw(node_spec(chans, shape_reads, width))
        nodes.append(node)
        chans.append(node.out)
    head = Head(
        mean=draw(st.booleans()),
        layer_norm=draw(st.sampled_from([False, False, False, True])),
        hidden=draw(st.sampled_from([0, 4, 7])) * width,
        act=draw(st.sampled_from(ACTS)),
        dropout=draw(st.booleans()),
        grid=grid,
    )
    return Spec(tuple(nodes), head, in_channels)


# -- model ------------------------------------------------------------------------------------------------


def make_act(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "hardswish": nn.Hardswish,
        "identity": nn.Identity,
    }[name]()


class FuzzNet(nn.Module):
    """Interprets a :class:`Spec`; forward reads channel counts only from tensors, never from the spec.

    A ``scale`` node is a learned per-channel factor (a [1, C, 1, 1] parameter); a ``shaperead`` node
    reads the channel count of its reshape from another node's tensor, as user code often does.
    """

    def __init__(self, spec: Spec, num_out: int = NUM_OUT) -> None:
        super().__init__()
        self.spec = spec
        chans = channels(spec)
        self.layers = nn.ModuleDict()
        for i, n in enumerate(spec.nodes, 1):
            key = f"n{i}"
            if n.op == "conv":
                cin = chans[n.srcs[0]]
                self.layers[key] = nn.Conv2d(cin, n.out, n.kernel, padding=n.kernel // 2, groups=n.groups,
                                             bias=n.bias)  # fmt: skip
            elif n.op == "bn":
                self.layers[key] = nn.BatchNorm2d(n.out)
            elif n.op == "act":
                self.layers[key] = make_act(n.act)
            elif n.op == "dropout":
                self.layers[key] = nn.Dropout(n.p)
            elif n.op == "scale":
                self.layers[key] = Scale(n.out)
            elif n.op == "shaperead":
                self.layers[key] = nn.Linear(n.out, n.out)
            elif n.op in ("add", "mul") and n.proj:
                self.layers[key] = nn.Conv2d(chans[n.srcs[1]], n.out, 1, bias=n.bias)
        width = sum(chans[i] for i in sinks(spec)) * max(spec.head.grid, 1) ** 2
        h = spec.head
        self.norm = nn.LayerNorm(width) if h.layer_norm else nn.Identity()
        self.hidden = (
            nn.Sequential(nn.Linear(width, h.hidden), make_act(h.act)) if h.hidden else nn.Identity()
        )
        self.drop = nn.Dropout(0.3) if h.dropout else nn.Identity()
        self.fc = nn.Linear(h.hidden or width, num_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals = [x]
        for i, n in enumerate(self.spec.nodes, 1):
            key = f"n{i}"
            a = vals[n.srcs[0]]
            if n.op in ("conv", "bn", "act", "dropout", "scale"):
                y = self.layers[key](a)
            elif n.op == "shaperead":
                b, _, h, w = a.shape
                c = vals[n.shape_of].shape[1]
                y = self.layers[key](a.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
            elif n.op in ("add", "mul"):
                b = vals[n.srcs[1]]
                if n.op == "mul" and n.gate == "se":
                    b = b.mean((2, 3), keepdim=True)
                if n.proj:
                    b = self.layers[key](b)
                y = a + b if n.op == "add" else a * (b if n.gate == "plain" else torch.sigmoid(b))
            elif n.op == "cat":
                y = torch.cat([vals[s] for s in n.srcs], dim=1)
            elif n.op == "chunk":
                pieces = torch.split(a, a.shape[1] // 2, dim=1) if n.split else a.chunk(2, dim=1)
                y = pieces[n.half]
            else:
                raise AssertionError(n.op)
            vals.append(y)
        if self.spec.head.grid:
            pooled = [
                F.adaptive_avg_pool2d(vals[i], self.spec.head.grid).flatten(1) for i in sinks(self.spec)
            ]
        elif self.spec.head.mean:
            pooled = [vals[i].mean((2, 3)) for i in sinks(self.spec)]
        else:
            pooled = [torch.flatten(F.adaptive_avg_pool2d(vals[i], 1), 1) for i in sinks(self.spec)]
        z = torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0]
        return self.fc(self.drop(self.hidden(self.norm(z))))


class Scale(nn.Module):
    """A learned per-channel factor, as in layer scale or a gated concat."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


@torch.no_grad()
def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights (no exact zeros), non-trivial BN statistics and affine params; eval mode."""
    gen = torch.Generator().manual_seed(seed)

    def randn(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=gen)

    def uniform(shape: torch.Size, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            m.weight.copy_(randn(m.weight.shape) / fan_in**0.5)
            if m.bias is not None:
                m.bias.copy_(0.5 * randn(m.bias.shape))
        elif isinstance(m, nn.BatchNorm2d):
            sign = torch.where(torch.rand(m.weight.shape, generator=gen) < 0.2, -1.0, 1.0)
            m.weight.copy_(sign * uniform(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(0.5 * randn(m.bias.shape))
            m.running_mean.copy_(0.5 * randn(m.running_mean.shape))
            m.running_var.copy_(uniform(m.running_var.shape, 0.5, 2.0))
        elif isinstance(m, Scale):
            m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
        elif isinstance(m, nn.LayerNorm):
            m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(0.5 * randn(m.bias.shape))
    return model.eval()


def build(spec: Spec, seed: int, num_out: int = NUM_OUT) -> FuzzNet:
    return randomize(FuzzNet(spec, num_out), seed)


def example(batch: int, seed: int = 0, in_channels: int = IN_CHANNELS) -> torch.Tensor:
    return torch.randn(batch, in_channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
