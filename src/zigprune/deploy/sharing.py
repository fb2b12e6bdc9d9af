"""Weight sharing (Deep Compression): each layer's weights clustered to at most ``2**bits`` values by a
1-D k-means, stored as a small codebook plus packed indices, and the codebooks fine-tuned.

Layers are the weights of convolutions and linear layers (biases and norms stay fp32, as in Deep
Compression). Exact zeros, such as a zeroed group's, keep a code of their own, so a pruned model's
zeros stay exact and the other ``2**bits - 1`` values are fitted to the nonzero weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import QuantizeError
from .huffman import huffman_bits

SHARED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class SharedLayer:
    """One layer's codebook (float32 values) and the code of each weight (int64, the weight's shape)."""

    codebook: Tensor
    codes: Tensor

    def values(self) -> Tensor:
        return self.codebook[self.codes]


@dataclass
class Sharing:
    """The shared layers of a model by module name, the bits per code, and the storage they take."""

    bits: int
    layers: dict[str, SharedLayer]

    def sizes(self) -> dict[str, int]:
        """Bytes of the shared weights as fp32, as codebook + packed codes, and as codebook + Huffman-coded
        codes (the code lengths' total; the table of code lengths adds a byte per codebook entry)."""
        fp32 = packed = huffman = 0
        for layer in self.layers.values():
            n, book = layer.codes.numel(), layer.codebook.numel() * 4
            fp32 += n * 4
            packed += book + (n * self.bits + 7) // 8
            counts = torch.bincount(layer.codes.flatten(), minlength=layer.codebook.numel())
            huffman += book + layer.codebook.numel() + (huffman_bits(counts.tolist()) + 7) // 8
        return {"fp32_bytes": fp32, "packed_bytes": packed, "huffman_bytes": huffman}


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise QuantizeError(f"weight sharing takes 1 to 8 bits per weight, got {bits!r}; e.g. 4 or 6")
    return bits


def shared_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The modules whose weights are shared: convolutions and linear layers with a weight."""
    for name, module in model.named_modules():
        if isinstance(module, SHARED_TYPES) and module.weight is not None:
            yield name, module


@torch.no_grad()
def share_weights(
    model: nn.Module, bits: int = 4, *, init: str = "linear", seed: int = 0, iterations: int = 50
) -> Sharing:
    """Replace each conv/linear weight of ``model`` by the nearest of at most ``2**bits`` shared values,
    in place, and return the codebooks and codes.

    The values come from a 1-D k-means (Lloyd's algorithm, at most ``iterations`` rounds) started at
    evenly spaced values between the layer's smallest and largest weight (``init="linear"``, Deep
    Compression's best) or at weights drawn with ``seed`` (``init="random"``). Deterministic for a
    given ``init`` and ``seed``.
    """
    check_bits(bits)
    if init not in ("linear", "random"):
        raise QuantizeError(f"init is {init!r}; use 'linear' or 'random'")
    generator = torch.Generator().manual_seed(seed)
    layers = {}
    for name, module in shared_modules(model):
        weight = module.weight
        layer = _cluster(weight.detach().float().cpu(), 2**bits, init, generator, iterations)
        weight.copy_(layer.values().to(weight))
        layers[name] = layer
    if not layers:
        raise QuantizeError("the model has no convolution or linear layer whose weights could be shared")
    return Sharing(bits, layers)


def _cluster(weight: Tensor, k: int, init: str, generator: torch.Generator, iterations: int) -> SharedLayer:
    """Codebook and codes of one weight; code 0 is the value 0 when the weight has exact zeros."""
    flat = weight.flatten()
    nonzero = flat != 0
    zero = not bool(nonzero.all())
    values = flat[nonzero].double()
    wanted = min(k - int(zero), int(values.unique().numel()))
    centroids = _kmeans(values, wanted, init, generator, iterations) if wanted else values.new_zeros(0)
    codes = torch.zeros_like(flat, dtype=torch.long)
    codes[nonzero] = _assign(values, centroids) + int(zero)
    book = torch.cat([centroids.new_zeros(int(zero)), centroids]).float()
    return SharedLayer(book, codes.reshape(weight.shape))


def _kmeans(values: Tensor, k: int, init: str, generator: torch.Generator, iterations: int) -> Tensor:
    if init == "linear":
        centroids = torch.linspace(float(values.min()), float(values.max()), k, dtype=values.dtype)
    else:
        centroids = values[torch.randperm(values.numel(), generator=generator)[:k]].sort().values
    codes = _assign(values, centroids)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, codes, values)
        counts = torch.bincount(codes, minlength=k).to(values.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids).sort().values
        new = _assign(values, centroids)
        if torch.equal(new, codes):
            break
        codes = new
    return centroids


def _assign(values: Tensor, centroids: Tensor) -> Tensor:
    """The index of the nearest of the sorted ``centroids`` for each value."""
    if centroids.numel() <= 1:
        return torch.zeros_like(values, dtype=torch.long)
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values, midpoints)


def restore(model: nn.Module, sharing: Sharing) -> None:
    """Write each shared layer's codebook values back into the model's weights."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, layer in sharing.layers.items():
            weight = modules[name].weight
            weight.copy_(layer.values().to(weight))
