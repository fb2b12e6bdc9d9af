"""``zigprune export --int8 / --share-bits RUN_DIR``: the deployment sections for a finished run, from
its saved slim model and the data it recorded; ``metrics.json`` and ``report.md`` gain them."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import data
from ..core.construct import output_tensors, outside_tolerance
from ..core.trace import as_inputs
from ..deploy import OnnxModule
from ..errors import DataError, LoadError, QuantizeError
from ..io.onnx import export_onnx, quiet_onnx
from ..io.plan import read_plan
from ..io.saved import load
from ..io.trust import build_recorded
from ..models.spec import ModelSpec
from .config import check_int8_tolerance, check_number, check_onnx_installed
from .deploy_step import DeployData, deploy_data, int8_section, sharing_section
from .report import render_dir
from .run_data import load_run_data
from .rundir import HISTORY, METRICS, ONNX, write_json


def deploy_run(
    run_dir: str | Path,
    *,
    int8: bool,
    share_bits: int | None,
    factory: Any = None,
    trust_factory: bool = False,
    latency_seconds: float = 0.5,
    int8_tolerance: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write ``model.onnx`` (and with ``int8`` ``model.int8.onnx``, shipped when it loses at most
    ``int8_tolerance`` of the run's quality measure, the layers a mixed-precision policy kept fp32
    left in float; with ``share_bits``
    ``model.shared.safetensors``) into ``run_dir``; return the new metrics sections and add them to the
    run's ``metrics.json`` (re-rendering ``report.md``) when it has one. The dense model is the run's
    architecture rebuilt from its spec: pretrained weights for ``hf:`` models, fresh ones otherwise
    (its speed does not depend on them; its accuracy is the one the run recorded)."""
    check_onnx_installed(int8)
    check_int8_tolerance(int8_tolerance)
    check_number("latency_seconds", latency_seconds, 0.0, strict=True)
    directory = Path(run_dir)
    slim, dense, inputs, metrics = run_models(directory, factory, trust_factory)
    metrics_path = directory / METRICS
    sections: dict[str, Any] = {}
    slim_onnx = _slim_onnx(directory / ONNX, slim, inputs.example, log)
    if int8:
        with tempfile.TemporaryDirectory(prefix="zigprune-") as folder, quiet_onnx():
            dense_onnx = export_onnx(dense, inputs.example, Path(folder) / "dense.onnx", check=False)
            keep = tuple(metrics.get("policy", {}).get("fp32", ()))
            sections["int8"] = int8_section(
                log, directory, slim_onnx, dense_onnx, inputs, latency_seconds, int8_tolerance, keep
            )
    if share_bits:
        sections["sharing"] = sharing_section(log, directory, slim, share_bits, inputs, progress)
    if metrics:
        write_json(metrics_path, {**metrics, **sections})
        if (directory / HISTORY).is_file():
            render_dir(directory)
    return sections


def run_models(
    directory: Path, factory: Any = None, trust_factory: bool = False
) -> tuple[torch.nn.Module, torch.nn.Module, DeployData, dict[str, Any]]:
    """A run's slim model, its dense architecture (fresh weights, seed 0), what deployment measures with
    (its own data) and its metrics (empty when it has none)."""
    slim = load(directory, factory=factory, trust_factory=trust_factory)
    plan = read_plan(directory)
    spec = ModelSpec(str(plan["spec"]["text"]), dict(plan["spec"].get("kwargs") or {}))
    torch.manual_seed(0)
    dense = build_recorded(spec, factory, trust_factory).eval()
    metrics = _read_metrics(directory / METRICS)
    config = metrics.get("config", {})
    dataset = _dataset(plan["metadata"], spec, directory)
    accuracy = metrics.get("dense", {}).get("accuracy")
    inputs = deploy_data(
        dataset, dense, accuracy, int(config.get("batch_size") or 64), int(config.get("seed") or 0)
    )
    return slim, dense, inputs, metrics


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise LoadError(f"{path} is corrupt ({err}); run zigprune compress again or remove it") from None


def _dataset(recorded: dict[str, Any], spec: ModelSpec, directory: Path) -> data.Dataset:
    """The run's own data (with its folder, subset and, for text, tokenizer and length)."""
    name = recorded.get("data")
    if not name:
        raise DataError(
            f"{directory} does not record its dataset, and --int8 / --share-bits calibrate on it: save runs "
            "with zigprune compress or prune, or zp.save(..., metadata={'data': NAME})"
        )
    return load_run_data(
        spec, name, data_dir=recorded.get("data_dir"), subset=recorded.get("subset"),
        max_length=recorded.get("max_length", 128),
    ).dataset  # fmt: skip


def _slim_onnx(path: Path, slim: torch.nn.Module, example: Any, log: Callable[[str], None]) -> Path:
    """The run's ``model.onnx``, checked to load and to match the slim model; exported when missing."""
    if not path.is_file():
        with quiet_onnx():
            export_onnx(slim, example, path)
        log(f"wrote {path} (checked in ONNX Runtime against PyTorch)")
        return path
    with torch.no_grad():
        got, want = as_inputs(example).call(OnnxModule(path)), as_inputs(example).call(slim)
    want, got = output_tensors(want)[0], output_tensors(got)[0]
    if want.shape != got.shape or outside_tolerance(want, got, 1e-4) is not None:
        raise QuantizeError(
            f"{path} does not compute what the run's slim model does (another export?); remove it and "
            "run zigprune export again"
        )
    return path
