"""What ships: int8 (ONNX Runtime files, or torchao PT2E modules) measured against fp32, and weight sharing
(Deep Compression)."""

from .centroids import finetune_centroids
from .int8 import INT8, Int8Result, compare_int8
from .pt2e import CompiledModule, quantize_pt2e
from .quantize import SCHEMES, CalibrationReader, Scheme, quantize_onnx
from .session import OnnxModule
from .shared_file import load_shared, save_shared
from .sharing import Sharing, share_weights

__all__ = [
    "INT8",
    "SCHEMES",
    "CalibrationReader",
    "CompiledModule",
    "Int8Result",
    "OnnxModule",
    "Scheme",
    "Sharing",
    "compare_int8",
    "finetune_centroids",
    "load_shared",
    "quantize_onnx",
    "quantize_pt2e",
    "save_shared",
    "share_weights",
]
