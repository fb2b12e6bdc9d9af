"""Saving, loading and exporting: pickle-free run folders (safetensors + ``plan.json``) and ONNX files."""

from .inputs import describe_inputs, make_inputs
from .onnx import export_onnx
from .plan import read_plan
from .saved import load, save

__all__ = ["describe_inputs", "export_onnx", "load", "make_inputs", "read_plan", "save"]
