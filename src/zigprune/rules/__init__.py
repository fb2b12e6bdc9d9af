"""Per-op channel rules, one module per op family; importing this package registers them all."""

from . import attention, contraction, elementwise, norm, opaque, reduce, shape, split, tiling
from .registry import RULES, Ctx, bind, lookup, op_name, rule

__all__ = [
    "RULES", "Ctx", "attention", "bind", "contraction", "elementwise", "lookup", "norm", "op_name", "opaque",
    "reduce", "rule", "shape", "split", "tiling",
]  # fmt: skip
