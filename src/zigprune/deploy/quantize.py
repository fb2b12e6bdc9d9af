"""Static int8 quantization of an ONNX file with ONNX Runtime's ``quantize_static``, calibrated on the
batches the caller gives (model inputs, as everywhere in zigprune)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.batches import checked_batch, empty_calibration
from ..errors import QuantizeError, first_line
from ..io import ort
from ..io.atomic import atomic_write
from ..io.onnx import export_onnx, exported_weight
from ..registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scheme:
    """One way to quantize: the ONNX format (``qdq``: QuantizeLinear/DequantizeLinear pairs around fp32
    ops; ``qoperator``: integer ops such as QLinearConv; ``dynamic``: int8 weights, activations quantized
    per call from their own range, no calibration: what transformers keep their quality with),
    per-channel or per-tensor weight scales, op types left in fp32, and weight layers left in fp32 (by
    module name: a mixed-precision policy's ``fp32`` layers)."""

    format: str = "qdq"
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = ()
    keep_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        FORMATS.check(self.format)

    @property
    def label(self) -> str:
        """A short name, e.g. ``qdq per-channel`` or ``qoperator per-tensor, Add in fp32``."""
        text = f"{self.format} {'per-channel' if self.per_channel else 'per-tensor'}"
        text += f", {'/'.join(self.keep_fp32)} in fp32" if self.keep_fp32 else ""
        return text + (f", {len(self.keep_layers)} layers in fp32" if self.keep_layers else "")


FORMATS: Registry[str] = Registry(
    "int8 format", {"qdq": "QDQ pairs", "qoperator": "integer operators", "dynamic": "dynamic"}, QuantizeError
)
# What --int8 tries: ORT's recommended QDQ with per-channel weights, the integer-operator format, and
# per-tensor scales (fewer rescale steps), then element-wise ops kept in fp32 (a QDQ pair around a
# residual Add can cost more than the Add saves), then dynamic quantization (static int8 activations
# ruin a transformer encoder: all-MiniLM-L6-v2 fell from 0.93 to 0.28 cosine; dynamic kept 0.927).
SCHEMES = (
    Scheme(),
    Scheme("qoperator"),
    Scheme(per_channel=False),
    Scheme(keep_fp32=("Add", "Mul")),
    Scheme("dynamic"),
)


class CalibrationReader:
    """ONNX Runtime's calibration data reader over the given batches, each fed by the model's input names
    (``get_next`` returns exactly those batches, in order, then None)."""

    def __init__(self, path: Path, takes: list[Any], calibration: Iterable[Any]) -> None:
        self._feeds = (self._feed(path, takes, batch, i) for i, batch in enumerate(calibration))
        self.count = 0

    @staticmethod
    def _feed(path: Path, takes: list[Any], batch: Any, index: int) -> dict[str, np.ndarray]:
        inputs = checked_batch(batch, index, QuantizeError)
        try:
            return ort.arrays(ort.feed(path, takes, inputs, QuantizeError))
        except QuantizeError as err:
            raise QuantizeError(f"calibration batch {index} does not fit {path.name}: {err}") from None

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        self.count += feed is not None
        return feed

    def rewind(self) -> None:
        """ORT calls this between calibration passes of some methods; MinMax makes one pass."""


def quantize_onnx(
    onnx_path: str | os.PathLike,
    calibration: Iterable[Any],
    out_path: str | os.PathLike,
    *,
    scheme: Scheme = Scheme(),
    preprocess: bool = True,
) -> Path:
    """Write a static int8 copy of the ONNX model at ``onnx_path`` to ``out_path``, atomically.

    ``calibration`` is an iterable of model inputs (a Tensor, a tuple of positional args or a dict of
    keyword args per batch, as ``zp.export_onnx`` named them), fed in order to find activation ranges
    (MinMax; the ``dynamic`` scheme needs none and ignores them); weights are int8 (per channel by
    default), activations int8. With ``preprocess`` the
    model first goes through ORT's ``quant_pre_process`` (shape inference and graph optimisation, as
    ORT recommends). Raises :class:`QuantizeError` (nothing written) on a file ORT cannot read, an
    empty calibration, or batches that do not fit the model's inputs.
    """
    quantization = _quantization()
    source, out = Path(onnx_path), Path(out_path)
    takes = _inputs_of(source)
    reader = CalibrationReader(source, takes, calibration)
    with tempfile.TemporaryDirectory(prefix="zigprune-int8-") as folder:
        model = _preprocess(quantization, source, Path(folder) / "pre.onnx") if preprocess else source

        def write(temp: Path) -> None:
            with _quiet_ort():
                _quantize(quantization, model, temp, reader, scheme)

        atomic_write(out, write)
    log.info("int8 (%s) of %s calibrated on %d batches: %s", scheme.label, source.name, reader.count, out)
    return out


def preprocess_onnx(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """ORT's ``quant_pre_process`` of ``onnx_path`` into ``out_path`` (what ``quantize_onnx`` does first
    unless ``preprocess=False``): done once, it serves every scheme quantized from the same file."""
    quantization = _quantization()
    source = Path(onnx_path)
    _inputs_of(source)
    return _preprocess(quantization, source, Path(out_path))


def _quantization() -> Any:
    """ONNX Runtime's quantization tools, or a QuantizeError saying how to install them."""
    try:
        from onnxruntime import quantization
    except ImportError as err:
        raise QuantizeError(
            f"int8 quantization needs onnx and onnxruntime ({err}): pip install 'zigprune[onnx]'"
        ) from None
    return quantization


def _inputs_of(path: Path) -> list[Any]:
    """The model's inputs, or a QuantizeError saying the file is missing or not an ONNX model."""
    return ort.open_session(path, error=QuantizeError).get_inputs()


def _preprocess(quantization: Any, source: Path, out: Path) -> Path:
    """ORT's pre-processing; its symbolic shape inference gives up on some transformer graphs (dynamic
    sequence lengths through attention), and then ONNX's own shape inference is used alone."""
    try:
        with _quiet_ort():
            quantization.shape_inference.quant_pre_process(str(source), str(out))
        return out
    except Exception as err:
        symbolic = first_line(err)
    log.info("symbolic shape inference failed on %s (%s); using ONNX shape inference only", source, symbolic)
    try:
        with _quiet_ort():
            quantization.shape_inference.quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as err:
        raise QuantizeError(
            f"ONNX Runtime's quant_pre_process failed on {source} ({symbolic}; without symbolic shape "
            f"inference: {first_line(err)}); quantize_onnx(..., preprocess=False) skips it"
        ) from err
    return out


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """ONNX Runtime's quantization tools print shape dumps and log per-weight notes on the root logger
    (which, unconfigured, would also install a handler on it); a failure still raises a QuantizeError."""
    root = logging.getLogger()
    level, quiet = root.level, logging.NullHandler()
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeHandler(quiet)
        root.setLevel(level)


def _quantize(quantization: Any, model: Path, out: Path, reader: CalibrationReader, scheme: Scheme) -> None:
    formats = {"qdq": quantization.QuantFormat.QDQ, "qoperator": quantization.QuantFormat.QOperator}
    exclude = _nodes_of(model, set(scheme.keep_fp32), set(scheme.keep_layers)) or None
    if scheme.format == "dynamic":
        try:
            quantization.quantize_dynamic(
                str(model),
                str(out),
                per_channel=scheme.per_channel,
                weight_type=quantization.QuantType.QInt8,
                nodes_to_exclude=exclude,
            )
        except Exception as err:
            raise QuantizeError(f"ONNX Runtime could not quantize {model.name} ({first_line(err)})") from err
        return
    try:
        quantization.quantize_static(
            str(model),
            str(out),
            reader,
            quant_format=formats[scheme.format],
            per_channel=scheme.per_channel,
            activation_type=quantization.QuantType.QInt8
            if scheme.format == "qdq"
            else quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=exclude,
        )
    except QuantizeError:
        raise
    except Exception as err:
        if reader.count == 0:
            raise empty_calibration(QuantizeError) from None
        raise QuantizeError(f"ONNX Runtime could not quantize {model.name} ({first_line(err)})") from err


def _nodes_of(model: Path, op_types: set[str], layers: set[str]) -> list[str]:
    """Names of the nodes of ``model`` whose op type is in ``op_types``, and of the weight nodes of the
    modules named in ``layers`` (found by the name the export gives their weight)
    A layer found nowhere is a QuantizeError: its node would be quantized against the caller's word."""
    if not op_types and not layers:
        return []
    import onnx

    nodes = onnx.load(str(model)).graph.node
    weights = {exported_weight(layer): layer for layer in layers}
    found = {weights[name]: node.name for node in nodes for name in node.input if name in weights}
    missing = sorted(layers - set(found))
    if missing:
        raise QuantizeError(
            f"no node of the ONNX file takes the weight of {', '.join(missing)}: cannot keep those layers in "
            "fp32 (the file is not an export of the model the policy was searched on)"
        )
    return [node.name for node in nodes if node.op_type in op_types] + sorted(found.values())


def int8_file(
    model: Any, example: Any, calibration: Iterable[Any], path: Path, keep_layers: Iterable[str] = ()
) -> Path:
    """``model`` exported to ``path``.onnx and quantized to ``path``.int8.onnx, activation ranges from
    ``calibration``, the weight layers named in ``keep_layers`` left in fp32 (a policy's mixed precision)."""
    onnx_path = export_onnx(model, example, path.with_suffix(".onnx"), check=False)
    scheme = Scheme(keep_layers=tuple(keep_layers))
    return quantize_onnx(onnx_path, calibration, path.with_suffix(".int8.onnx"), scheme=scheme)
