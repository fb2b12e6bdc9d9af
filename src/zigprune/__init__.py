"""zigprune: train once, get a physically smaller PyTorch model with the same outputs."""

from ._quiet import quiet_optional_libraries
from ._version import __version__
from .core.analysis import analyze
from .core.limits import Limits
from .core.selection import Target
from .core.space import Family, GroupSpace
from .deploy import finetune_centroids, load_shared, quantize_onnx, quantize_pt2e, save_shared, share_weights
from .errors import (
    CalibrationError,
    ConstructionError,
    ExampleInputError,
    MetaDeviceError,
    QuantizeError,
    TargetError,
    TraceError,
    ZigpruneError,
)
from .io import Checkpoint, export_onnx, load, load_pruned, save
from .measure import count
from .optim import DHSPG, HESSO, HSPG
from .posttrain import prune

quiet_optional_libraries()

__all__ = [
    "DHSPG", "HESSO", "HSPG", "CalibrationError", "Checkpoint", "ConstructionError", "ExampleInputError",
    "Family", "GroupSpace", "Limits", "MetaDeviceError", "QuantizeError", "Target", "TargetError",
    "TraceError", "ZigpruneError", "__version__", "analyze", "count", "export_onnx", "finetune_centroids",
    "load", "load_pruned", "load_shared", "prune", "quantize_onnx", "quantize_pt2e", "save", "save_shared",
    "share_weights",
]  # fmt: skip
