"""The size of a Huffman code: how Deep Compression's last stage shrinks the weight codes further."""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def huffman_bits(counts: Sequence[int]) -> int:
    """Total bits of the symbols with these counts under an optimal prefix (Huffman) code.

    Each merge of the two rarest subtrees adds their total count once per symbol below it, so the
    sum of the merged weights is the coded length. A single used symbol still takes one bit each.
    """
    used = [int(c) for c in counts if c > 0]
    if len(used) <= 1:
        return sum(used)
    heapq.heapify(used)
    total = 0
    while len(used) > 1:
        merged = heapq.heappop(used) + heapq.heappop(used)
        total += merged
        heapq.heappush(used, merged)
    return total
