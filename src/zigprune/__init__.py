"""zigprune: train once, get a physically smaller PyTorch model with the same outputs."""

from ._version import __version__
from .core.analysis import analyze
from .core.space import Family, GroupSpace
from .errors import CalibrationError, ConstructionError, ExampleInputError, TraceError, ZigpruneError
from .io import export_onnx, load, save
from .measure import count
from .optim import DHSPG, HESSO, HSPG
from .posttrain import prune

__all__ = [
    "DHSPG", "HESSO", "HSPG", "CalibrationError", "ConstructionError", "ExampleInputError", "Family",
    "GroupSpace", "TraceError", "ZigpruneError", "__version__", "analyze", "count", "export_onnx", "load",
    "prune", "save",
]  # fmt: skip
