"""ONNX export of a (slim) model, checked in ONNX Runtime against PyTorch before the file is kept."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.construct import output_tensors, outside_tolerance
from ..core.trace import Inputs, as_inputs, eval_mode
from ..errors import ExportError, first_line
from .atomic import atomic_write

log = logging.getLogger(__name__)


class _Positional(nn.Module):
    """Calls ``model`` with tensors as positional arguments (non-tensor inputs fixed), returning a tuple."""

    def __init__(self, model: nn.Module, inputs: Inputs) -> None:
        super().__init__()
        self.model = model
        self.args = inputs.args
        self.kwargs = inputs.kwargs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = iter(tensors)
        args = [next(given) if isinstance(v, torch.Tensor) else v for v in self.args]
        kwargs = {k: next(given) if isinstance(v, torch.Tensor) else v for k, v in self.kwargs.items()}
        return tuple(output_tensors(self.model(*args, **kwargs)))


def _tensor_inputs(inputs: Inputs) -> tuple[list[str], list[torch.Tensor]]:
    """Names and values of the tensor inputs: ``input``/``input_i`` for positionals, keyword names."""
    args = [v for v in inputs.args if isinstance(v, torch.Tensor)]
    names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    kwargs = {k: v for k, v in inputs.kwargs.items() if isinstance(v, torch.Tensor)}
    return [*names, *kwargs], [*args, *kwargs.values()]


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs onnx and onnxruntime ({err}): pip install 'zigprune[onnx]'"
        ) from err
    return onnxruntime


def _export_dynamo(
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, dynamic: bool, outs: int
) -> None:
    batch = torch.export.Dim("batch")
    shapes = (tuple({0: batch} for _ in tensors),) if dynamic else None
    program = torch.onnx.export(
        wrapped,
        tuple(tensors),
        dynamo=True,
        dynamic_shapes=shapes,
        input_names=names,
        output_names=[f"output_{i}" for i in range(outs)],
        verbose=False,
    )
    program.save(str(path), external_data=False)


def _export_torchscript(
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, dynamic: bool, outs: int
) -> None:
    output_names = [f"output_{i}" for i in range(outs)]
    axes = {name: {0: "batch"} for name in [*names, *output_names]} if dynamic else None
    torch.onnx.export(
        wrapped, tuple(tensors), str(path), dynamo=False, input_names=names, output_names=output_names,
        dynamic_axes=axes,
    )  # fmt: skip


def _write_onnx(
    path: Path, wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], dynamic: bool, outs: int
) -> None:
    """Export with the dynamo exporter, or with ``dynamo=False`` if it fails (logged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _export_dynamo(wrapped, tensors, names, path, dynamic, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=True)")
            return
        except Exception as err:
            log.warning(
                "the dynamo ONNX exporter failed (%s: %s); exporting with torch.onnx.export(dynamo=False)",
                type(err).__name__, first_line(err),
            )  # fmt: skip
        try:
            _export_torchscript(wrapped, tensors, names, path, dynamic, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=False)")
        except Exception as err:
            raise ExportError(
                f"torch.onnx.export failed with and without dynamo ({type(err).__name__}: "
                f"{first_line(err)}); make the model traceable by torch.export (see zp.analyze's advice)"
            ) from err


def _grow_batch(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same inputs with one more sample (a copy of the first), to check the batch dim is dynamic."""
    return [torch.cat([t, t[:1]]) for t in tensors]


def _check_onnx(
    path: Path, wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], dynamic: bool, atol: float
) -> None:
    """Run the exported file in ONNX Runtime and compare with PyTorch at the example batch (and one more)."""
    session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [tensors, _grow_batch(tensors)] if dynamic else [tensors]
    for feed in feeds:
        with torch.no_grad():
            reference = wrapped(*feed)
        got = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, feed)})
        if len(got) != len(reference):
            raise ExportError(
                f"ONNX model gives {len(got)} outputs instead of {len(reference)}; report the model"
            )
        for i, (r, g) in enumerate(zip(reference, got)):
            g = torch.from_numpy(g)
            if tuple(g.shape) != tuple(r.shape):
                raise ExportError(
                    f"ONNX output {i} has shape {tuple(g.shape)} instead of {tuple(r.shape)} at batch "
                    f"{feed[0].shape[0]}; export with dynamic_batch=False or fix batch-dependent code"
                )
            off = outside_tolerance(r, g, atol)
            if off is not None:
                raise ExportError(
                    f"ONNX Runtime output {i} differs from PyTorch by {off[0]:.3g} (scale {off[1]:.3g}, atol "
                    f"{atol:g}) at batch {feed[0].shape[0]}; report the model or raise atol"
                )


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` to an ONNX file (dim 0 of every tensor input as a dynamic batch), atomically.

    Tries ``torch.onnx.export``'s dynamo exporter first, then ``dynamo=False`` (logged). Tensor inputs
    are named ``input`` (``input_i``) or by keyword, outputs ``output_i``. With ``check`` the file is run
    in ONNX Runtime at the example batch (and one more) and must match PyTorch within ``atol`` × the
    output scale, or :class:`ExportError` is raised and no file is written.
    """
    _onnxruntime()
    path = Path(path)
    inputs = as_inputs(example_inputs, model)
    names, tensors = _tensor_inputs(inputs)
    if not tensors:
        raise ExportError("ONNX export needs at least one tensor input; pass the example inputs as tensors")
    if dynamic_batch and any(t.dim() == 0 for t in tensors):
        raise ExportError("a scalar input has no batch dimension; export with dynamic_batch=False")
    if dynamic_batch and tensors[0].shape[0] == 1:
        tensors = _grow_batch(tensors)  # torch.export treats a size-1 dim as static
    wrapped = _Positional(model, inputs)
    with eval_mode(wrapped), torch.no_grad():
        outs = len(wrapped(*tensors))

        def write(temp: Path) -> None:
            _write_onnx(temp, wrapped, tensors, names, dynamic_batch, outs)
            if check:
                _check_onnx(temp, wrapped, tensors, names, dynamic_batch, atol)

        atomic_write(path, write)
    return path


@contextlib.contextmanager
def quiet_onnx() -> Iterator[None]:
    """Hide the ONNX exporter's informational warnings (e.g. about torchvision ops it skips)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def has_onnx() -> bool:
    """Whether onnx and onnxruntime are installed (the ``zigprune[onnx]`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
