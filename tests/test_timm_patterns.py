"""Patterns from timm models (issue 17), each as a small module: prunable, and exact when pruned.

timm itself is not needed: every class below copies the few lines of a timm model that mattered
(named in its docstring), with random weights and tiny sizes. Attention is in test_timm_attention.py.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

import zigprune as zp
from equality import prune_and_check


def exact(
    model: nn.Module, x: torch.Tensor, fraction: float = 0.5, **kwargs
) -> tuple[zp.GroupSpace, nn.Module]:
    """Every group the rules find survives the construction check, and cutting ``fraction`` of them
    (1.0: every family down to the one group construction keeps) is exact."""
    torch.manual_seed(0)
    found = zp.analyze(copy.deepcopy(model).eval(), x, check=False).num_groups
    space, slim = prune_and_check(model, x, fraction, **kwargs)
    assert space.num_groups == found > 0
    return space, slim


def family(space: zp.GroupSpace, module: str) -> zp.Family:
    return next(f for f in space.families if module in f.modules)


# -- item 1: a clamp whose bounds are buffers (gemma4_vit's Gemma4ClippableLinear) -----------------------


class ClippableLinear(nn.Module):
    """``torch.clamp(x, self.input_min, self.input_max)`` around a Linear, the bounds one-element buffers."""

    def __init__(self, n_in: int, n_out: int, low: float = -float("inf")) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        for name, value in (("input_min", -float("inf")), ("input_max", float("inf")), ("output_min", low)):
            self.register_buffer(name, torch.tensor(value))
        self.register_buffer("output_max", torch.tensor(float("inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(x, self.input_min, self.input_max)
        return torch.clamp(self.linear(x), self.output_min, self.output_max)


class ClippedMlp(nn.Module):
    def __init__(self, low: float = -float("inf")) -> None:
        super().__init__()
        self.up = ClippableLinear(6, 12, low)
        self.down = ClippableLinear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def test_clamp_by_buffers_is_exact_where_the_bounds_hold_zero() -> None:
    x = torch.randn(4, 6)
    space, slim = exact(ClippedMlp(), x)
    assert len(family(space, "up.linear").groups) == 12 and slim.up.linear.out_features < 12
    unprunable = zp.analyze(ClippedMlp(low=0.5).eval(), x, check=False)
    assert family(unprunable, "up.linear").groups == []
    assert any("not exactly zero" in r for r in family(unprunable, "up.linear").reasons)


# -- item 2: ops that had no rule -------------------------------------------------------------------------


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN tail, ``x + torch.addcmul(bias, weight, x * scale)``, on a per-channel scale."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(1, 8, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, 8, 1, 1))
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = h + torch.addcmul(self.bias, self.weight, h * torch.sigmoid(h))
        return self.head(h).mean((2, 3))


class Repeats(nn.Module):
    """Channels repeated along their own dim: ``repeat_interleave`` (GQA key heads), ``tile``; then
    ``clamp_min`` and an antialiased bicubic resize (``_upsample_bicubic2d_aa``)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.a(x)).repeat_interleave(2, dim=1)
        b = self.b(x).clamp_min(0.0).tile((1, 2, 1, 1))
        h = F.interpolate(torch.cat([a, b], 1), scale_factor=2, mode="bicubic", antialias=True)
        return self.head(h).mean((2, 3))


def test_addcmul_is_exact() -> None:
    space, slim = exact(GlobalResponseNorm(), torch.randn(2, 3, 6, 6))
    assert len(family(space, "conv").groups) == 8
    assert slim.weight.shape[1] == slim.bias.shape[1] == slim.conv.out_channels < 8


def test_repeat_interleave_tile_clamp_min_and_antialiased_resize_are_exact() -> None:
    space, slim = exact(Repeats(), torch.randn(2, 3, 6, 6))
    assert len(family(space, "a").groups) == 8 and family(space, "a") is family(space, "b")
    assert slim.head.in_channels == 2 * (slim.a.out_channels + slim.b.out_channels) < 16


def test_clamp_min_above_zero_and_repeat_by_a_tensor_are_refused() -> None:
    class Refused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 4, 1)
            self.head = nn.Conv2d(9, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            counts = torch.tensor([1, 2, 1, 1])
            h = torch.cat([self.a(x).clamp_min(0.1), self.b(x).repeat_interleave(counts, dim=1)], 1)
            return self.head(h).mean((2, 3))

    space = zp.analyze(Refused().eval(), torch.randn(2, 3, 4, 4), check=False)
    assert family(space, "a").groups == family(space, "b").groups == []
    assert any("not exactly zero" in r for r in family(space, "a").reasons)
    assert any("tensor of counts" in r for r in family(space, "b").reasons)


# -- item 4: sizes kept as attributes ---------------------------------------------------------------------


class Res2Block(nn.Module):
    """Res2Net's ``Bottle2neck``: ``torch.split(out, self.width, 1)``, a cascade, then ``cat``."""

    def __init__(self, width: int = 4, scale: int = 3) -> None:
        super().__init__()
        self.width, self.scale = width, scale
        self.conv1 = nn.Conv2d(3, width * scale, 1)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(scale - 1)])
        self.conv3 = nn.Conv2d(width * scale, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spx = torch.split(torch.relu(self.bn1(self.conv1(x))), self.width, 1)
        spo, sp = [], spx[0]
        for i, conv in enumerate(self.convs):
            sp = torch.relu(conv(spx[i] if i == 0 else sp + spx[i]))
            spo.append(sp)
        return self.conv3(torch.cat([*spo, spx[-1]], 1)).mean((2, 3))


class BlurPool(nn.Module):
    """timm's ``BlurPool2d``: a fixed filter buffer and ``F.conv2d(..., groups=self.channels)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels, self.stride = channels, 2
        self.register_buffer("filt", torch.full((channels, 1, 3, 3), 1 / 9), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=self.channels)


class BlurNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.blur = BlurPool(8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blur(torch.relu(self.conv(x)))).mean((2, 3))


class CrossStage(nn.Module):
    """CSPNet's ``CrossStage``: ``x.split(self.expand_chs // 2, dim=1)`` (the attribute is the total)."""

    def __init__(self, expand_chs: int = 8) -> None:
        super().__init__()
        self.expand_chs = expand_chs
        self.conv_exp = nn.Conv2d(3, expand_chs, 1)
        self.block = nn.Conv2d(expand_chs // 2, expand_chs // 2, 3, padding=1)
        self.conv_transition = nn.Conv2d(expand_chs, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, xb = torch.relu(self.conv_exp(x)).split(self.expand_chs // 2, dim=1)
        return self.conv_transition(torch.cat([xs, torch.relu(self.block(xb))], 1)).mean((2, 3))


class InceptionDWConv(nn.Module):
    """InceptionNeXt's token mixer: ``torch.split(x, self.split_indexes, dim=1)``, a fixed tuple."""

    def __init__(self, channels: int = 10, gc: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 1)
        self.dwconv_hw = nn.Conv2d(gc, gc, 3, padding=1, groups=gc)
        self.dwconv_w = nn.Conv2d(gc, gc, (1, 3), padding=(0, 1), groups=gc)
        self.split_indexes = (channels - 2 * gc, gc, gc)
        self.head = nn.Conv2d(channels, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_id, x_hw, x_w = torch.split(torch.relu(self.stem(x)), self.split_indexes, dim=1)
        h = torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w)), dim=1)
        return self.head(h).mean((2, 3))


def test_split_by_an_attribute_width_is_rewritten() -> None:
    _, slim = exact(Res2Block(), torch.randn(2, 3, 6, 6))
    assert slim.conv1.out_channels == slim.width * 3 and slim.width < 4
    assert all(conv.in_channels == slim.width for conv in slim.convs)


def test_conv_groups_from_an_attribute_are_rewritten() -> None:
    space, slim = exact(BlurNet(), torch.randn(2, 3, 8, 8))
    assert len(family(space, "conv").groups) == 8
    assert slim.blur.channels == slim.blur.filt.shape[0] == slim.conv.out_channels < 8
    assert slim.blur.stride == 2


def test_split_by_an_attribute_total_is_rewritten() -> None:
    _, slim = exact(CrossStage(), torch.randn(2, 3, 6, 6))
    assert slim.expand_chs == slim.conv_exp.out_channels == 2 * slim.block.in_channels < 8


def test_split_by_an_attribute_tuple_lets_each_piece_shrink() -> None:
    space, slim = exact(InceptionDWConv(), torch.randn(2, 3, 6, 6))
    assert len(family(space, "stem").groups) == 10
    assert list(slim.split_indexes) == [
        slim.stem.out_channels - slim.dwconv_hw.in_channels - slim.dwconv_w.in_channels,
        slim.dwconv_hw.in_channels,
        slim.dwconv_w.in_channels,
    ]


def test_a_split_size_no_attribute_holds_stays() -> None:
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(6, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = torch.relu(self.conv(x)).split([5, 3], 1)
            return self.head(torch.cat([a, b[:, :1]], 1)).mean((2, 3))

    space = zp.analyze(Fixed().eval(), torch.randn(2, 3, 4, 4), check=False)
    assert family(space, "conv").groups == []
    assert any("at sizes fixed in the model" in r for r in family(space, "conv").reasons)


# -- items 5 and 6: uneven splits and a softmax over paths ------------------------------------------------


class GatedConv(nn.Module):
    """MambaOut's ``GatedConvBlock``: ``torch.split(x, self.split_indices, dim=-1)`` into unequal
    gate, identity and conv pieces, a depthwise conv on the last, ``act(g) * cat(i, c)``."""

    def __init__(self, dim: int = 6, hidden: int = 8, conv_channels: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden * 2)
        self.split_indices = (hidden, hidden - conv_channels, conv_channels)
        self.conv = nn.Conv2d(conv_channels, conv_channels, 3, padding=1, groups=conv_channels)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, i, c = torch.split(self.fc1(x), self.split_indices, dim=-1)
        c = self.conv(c.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.fc2(F.gelu(g) * torch.cat((i, c), dim=-1))


class SelectiveKernel(nn.Module):
    """SKNet's ``SelectiveKernel``: ``torch.split(x, self.in_channels // self.num_paths, 1)``, paths
    stacked, attention ``softmax`` over the path dim, per channel, and a sum over paths."""

    def __init__(self, in_channels: int = 8, out_channels: int = 6) -> None:
        super().__init__()
        self.num_paths, self.in_channels, self.out_channels = 2, in_channels, out_channels
        self.stem = nn.Conv2d(3, in_channels, 1)
        self.paths = nn.ModuleList(
            [nn.Conv2d(in_channels // 2, out_channels, 3, padding=1) for _ in range(2)]
        )
        self.fc_reduce = nn.Conv2d(out_channels, 4, 1)
        self.fc_select = nn.Conv2d(4, out_channels * 2, 1)
        self.head = nn.Conv2d(out_channels, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_split = torch.split(torch.relu(self.stem(x)), self.in_channels // self.num_paths, 1)
        x = torch.stack([torch.relu(op(part)) for op, part in zip(self.paths, x_split)], dim=1)
        a = self.fc_select(torch.relu(self.fc_reduce(x.sum(1).mean((2, 3), keepdim=True))))
        B, C, H, W = a.shape
        a = torch.softmax(a.view(B, self.num_paths, C // self.num_paths, H, W), dim=1)
        return self.head((x * a).sum(1)).mean((2, 3))


def test_uneven_split_by_an_attribute_tuple_is_exact() -> None:
    space, slim = exact(GatedConv(), torch.randn(2, 4, 4, 6))
    assert len(family(space, "fc1").groups) == 8
    kept = slim.fc2.in_features
    assert slim.split_indices[0] == kept == slim.split_indices[1] + slim.split_indices[2] < 8
    assert slim.conv.in_channels == slim.conv.groups == slim.split_indices[2]


def test_softmax_over_paths_cuts_a_channel_across_every_path() -> None:
    space, slim = exact(SelectiveKernel(), torch.randn(2, 3, 6, 6))
    assert len(family(space, "paths.0").groups) == 6
    assert slim.fc_select.out_channels == 2 * slim.paths[0].out_channels < 12
    assert slim.in_channels == slim.stem.out_channels == 2 * slim.paths[1].in_channels
