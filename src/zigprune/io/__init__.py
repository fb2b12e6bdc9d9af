"""Saving, loading and exporting: pickle-free run folders (safetensors + ``plan.json``) and ONNX files."""

from .checkpoint_reader import Checkpoint
from .inputs import describe_inputs, make_inputs
from .load_pruned import load_pruned
from .onnx import export_onnx
from .plan import read_plan
from .saved import load, save

__all__ = [
    "Checkpoint", "describe_inputs", "export_onnx", "load", "load_pruned", "make_inputs", "read_plan", "save",
]  # fmt: skip
