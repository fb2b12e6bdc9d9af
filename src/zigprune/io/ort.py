"""ONNX Runtime, in one place: open a CPU session on a file, feed it a batch by the file's input names,
and check the batch fits the file's fixed sizes. Each caller names the error its own users expect
(``ExportError`` for export checks, ``LatencyError`` for timing, ``QuantizeError`` for int8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..core.trace import Inputs
from ..errors import ZigpruneError, first_line

INSTALL = "pip install 'zigprune[onnx]'"


def onnxruntime(error: type[Exception] = ZigpruneError, what: str = "running an ONNX file") -> Any:
    """The ``onnxruntime`` module, or ``error`` saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise error(f"{what} needs onnxruntime ({err}): {INSTALL}") from None
    return ort


def open_session(
    path: str | Path,
    *,
    threads: int | None = None,
    timing: bool = False,
    error: type[Exception] = ZigpruneError,
) -> Any:
    """A CPU ``InferenceSession`` on ``path`` with ``threads`` intra-op threads (ORT's choice if None).

    ``timing``: one inter-op thread, sequential execution and no spinning between calls, so a timed
    call measures the model and not threads left busy by the previous one. A missing file or one ORT
    cannot load is an ``error`` saying to export it again."""
    ort = onnxruntime(error)
    if not Path(path).is_file():
        raise error(f"no ONNX model at {path}: export one first (zp.export_onnx or zigprune export)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if timing:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise error(
            f"{path} is not an ONNX model ONNX Runtime can load ({first_line(err)}); export it again"
        ) from None


def feed(
    path: Any, takes: list[Any], batch: Inputs, error: type[Exception] = ZigpruneError
) -> dict[str, Tensor]:
    """The batch's tensors by the ONNX model's input names (``takes``: the session's inputs), by name if
    the batch names them all, else in order; each checked against the file's fixed sizes."""
    named = batch.named_tensors()
    wanted = [arg.name for arg in takes]
    if all(name in named for name in wanted):
        found = {name: named[name] for name in wanted}
    elif len(named) == len(wanted):
        found = dict(zip(wanted, named.values()))
    else:
        raise error(
            f"{path} takes the inputs {', '.join(wanted)}, but the example gives "
            f"{', '.join(named) or 'none'}; pass the example inputs the model was exported with"
        )
    for arg in takes:
        _check_fixed(path, arg.name, arg.shape or [], found[arg.name], error)
    return found


def arrays(tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The feed as the numpy arrays ``session.run`` takes."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in tensors.items()}


def _check_fixed(path: Any, name: str, shape: list[Any], tensor: Tensor, error: type[Exception]) -> None:
    """An ``error`` when ``tensor`` does not fit a fixed (numbered) size of the ONNX input ``name``."""
    if len(shape) != tensor.dim():
        raise error(
            f"input {name!r} of {path} has {len(shape)} axes, but the example's has {tensor.dim()}; "
            "pass the example inputs the model was exported with"
        )
    for axis, (fixed, size) in enumerate(zip(shape, tensor.shape)):
        if not isinstance(fixed, int) or fixed == size:
            continue
        if axis == 0:
            raise error(
                f"{path} has a fixed batch size of {fixed}, so batch {size} cannot run: export it "
                f"with a dynamic batch dimension (zp.export_onnx) or pass batch_sizes=({fixed},)"
            )
        raise error(
            f"input {name!r} of {path} has a fixed size of {fixed} on axis {axis}, but the example's is "
            f"{size}: export with that axis dynamic, or pass inputs of size {fixed}"
        )
