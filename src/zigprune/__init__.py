"""zigprune: train once, get a physically smaller PyTorch model with the same outputs."""

from ._quiet import quiet_optional_libraries
from ._version import __version__
from .core.analysis import analyze
from .core.limits import Limits
from .core.policy import Policy
from .core.selection import Target
from .core.space import Family, GroupSpace
from .deploy import finetune_centroids, load_shared, quantize_onnx, quantize_pt2e, save_shared, share_weights
from .errors import (
    CalibrationError,
    ConstructionError,
    ExampleInputError,
    MetaDeviceError,
    PolicyError,
    QuantizeError,
    TargetError,
    TraceError,
    UnknownNameError,
    ZigpruneError,
)
from .io import Checkpoint, export_onnx, load, load_pruned, save
from .measure import count
from .optim import DHSPG, HESSO, HSPG
from .posttrain import prune
from .search import load_policy, save_policy, search

quiet_optional_libraries()

__all__ = [
    "DHSPG", "HESSO", "HSPG", "CalibrationError", "Checkpoint", "ConstructionError", "ExampleInputError",
    "Family", "GroupSpace", "Limits", "MetaDeviceError", "Policy", "PolicyError", "QuantizeError", "Target",
    "TargetError", "TraceError", "UnknownNameError", "ZigpruneError", "__version__", "analyze", "count",
    "export_onnx", "finetune_centroids", "load", "load_policy", "load_pruned", "load_shared", "prune",
    "quantize_onnx", "quantize_pt2e", "save", "save_policy", "save_shared", "search", "share_weights",
]  # fmt: skip
