"""ONNX export of a (slim) model, checked in ONNX Runtime against PyTorch before the file is kept."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.construct import output_tensors, outside_tolerance
from ..core.trace import Inputs, as_inputs, eval_mode
from ..errors import ExportError, first_line
from . import onnx_axes, ort
from .atomic import atomic_write
from .onnx_axes import BATCH, Axes

log = logging.getLogger(__name__)


def exported_weight(layer: str) -> str:
    """The initializer name :func:`export_onnx` gives the weight of the module at ``layer`` (the
    exporter names parameters by their path, and the model sits under ``_Positional.model``)."""
    return f"model.{layer}.weight"


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


def _onnx() -> None:
    """onnx and onnxruntime, both needed to export and check: an ExportError saying how to install them."""
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({err}): {ort.INSTALL}") from err
    ort.onnxruntime(ExportError, "ONNX export")


def _export_dynamo(
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, axes: list[Axes], outs: int
) -> None:
    dims = {name: torch.export.Dim(name) for name in onnx_axes.dims(axes)}
    shapes = (tuple({a: dims[name] for a, name in named.items()} for named in axes),) if dims else None
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
    wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], path: Path, axes: list[Axes], outs: int
) -> None:
    output_names = [f"output_{i}" for i in range(outs)]
    batched = BATCH in onnx_axes.dims(axes)
    dynamic = {
        **{name: named for name, named in zip(names, axes) if named},
        **({name: {0: BATCH} for name in output_names} if batched else {}),
    }
    torch.onnx.export(
        wrapped, tuple(tensors), str(path), dynamo=False, input_names=names, output_names=output_names,
        dynamic_axes=dynamic or None,
    )  # fmt: skip


def _write_onnx(
    path: Path, wrapped: nn.Module, tensors: list[torch.Tensor], names: list[str], axes: list[Axes], outs: int
) -> None:
    """Export with the dynamo exporter, or with ``dynamo=False`` if it fails (logged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _export_dynamo(wrapped, tensors, names, path, axes, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=True)")
            return
        except Exception as err:
            log.warning(
                "the dynamo ONNX exporter failed (%s: %s); exporting with torch.onnx.export(dynamo=False)",
                type(err).__name__, first_line(err),
            )  # fmt: skip
        try:
            _export_torchscript(wrapped, tensors, names, path, axes, outs)
            log.info("exported the ONNX model with torch.onnx.export(dynamo=False)")
        except Exception as err:
            raise ExportError(
                f"torch.onnx.export failed with and without dynamo ({type(err).__name__}: "
                f"{first_line(err)}); make the model traceable by torch.export (see zp.analyze's advice)"
            ) from err


def _file_axes(session: Any, names: list[str]) -> list[Axes]:
    """The axes the exported file leaves dynamic (a named, not a numbered, size) per tensor input."""
    shapes = {i.name: i.shape or [] for i in session.get_inputs()}
    return [{a: d for a, d in enumerate(shapes.get(name, [])) if isinstance(d, str)} for name in names]


def _log_fixed(names: list[str], tensors: list[torch.Tensor], asked: list[Axes], got: list[Axes]) -> None:
    """Say which of the asked dynamic axes the exporter kept fixed (the model needs their size)."""
    for name, tensor, wanted, kept in zip(names, tensors, asked, got):
        for axis, dim in wanted.items():
            if axis not in kept:
                log.info(
                    "axis %d (%s) of input %r stays fixed at %d in the ONNX file: the model needs that size",
                    axis, dim, name, tensor.shape[axis],
                )  # fmt: skip


def _feeds(tensors: list[torch.Tensor], axes: list[Axes]) -> list[tuple[str | None, str, list[torch.Tensor]]]:
    """The example inputs, then for each dynamic dimension the inputs one longer along it:
    ``(dimension or None, where, tensors)``."""
    where = f"batch {tensors[0].shape[0]}" if tensors[0].dim() else "the example inputs"
    feeds: list[tuple[str | None, str, list[torch.Tensor]]] = [(None, where, tensors)]
    for dim in onnx_axes.dims(axes):
        feeds.append(
            (dim, f"{dim} {onnx_axes.size_of(tensors, axes, dim) + 1}", onnx_axes.grow(tensors, axes, dim))
        )
    return feeds


def _advice(dim: str | None) -> str:
    """What to try when the exported file is wrong at another size of ``dim``."""
    if dim is None:
        return "report the model"
    if dim == BATCH:
        return "export with dynamic_batch=False or fix batch-dependent code"
    return (
        f"keep the {dim} axis fixed: pass dynamic_axes without it for the inputs that have it "
        "(e.g. dynamic_axes={'input_ids': {0: 'batch'}})"
    )


def _check_onnx(
    path: Path,
    wrapped: nn.Module,
    tensors: list[torch.Tensor],
    names: list[str],
    axes: list[Axes],
    atol: float,
) -> None:
    """Run the exported file in ONNX Runtime and compare with PyTorch at the example inputs, then one
    longer along each axis the file leaves dynamic."""
    session = ort.open_session(path, error=ExportError)
    takes = {i.name for i in session.get_inputs()}
    dynamic = _file_axes(session, names)
    _log_fixed(names, tensors, axes, dynamic)
    for dim, where, feed in _feeds(tensors, dynamic):
        try:
            with torch.no_grad():
                reference = wrapped(*feed)
        except Exception as err:
            log.info(
                "the model does not run at %s in PyTorch (%s); not compared there", where, first_line(err)
            )
            continue
        try:
            got = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, feed) if n in takes})
        except Exception as err:
            raise ExportError(
                f"ONNX Runtime cannot run the exported model at {where} ({type(err).__name__}: "
                f"{first_line(err)}); {_advice(dim)}"
            ) from err
        _compare(reference, got, where, dim, atol)


def _compare(
    reference: tuple[torch.Tensor, ...], got: list[Any], where: str, dim: str | None, atol: float
) -> None:
    """Raise an ExportError unless ONNX Runtime's outputs match PyTorch's in number, shape and value."""
    if len(got) != len(reference):
        raise ExportError(
            f"ONNX model gives {len(got)} outputs instead of {len(reference)}; report the model"
        )
    for i, (r, g) in enumerate(zip(reference, got)):
        g = torch.from_numpy(g)
        if tuple(g.shape) != tuple(r.shape):
            raise ExportError(
                f"ONNX output {i} has shape {tuple(g.shape)} instead of {tuple(r.shape)} at {where}; "
                f"{_advice(dim or BATCH)}"
            )
        off = outside_tolerance(r, g, atol)
        if off is not None:
            raise ExportError(
                f"ONNX Runtime output {i} differs from PyTorch by {off[0]:.3g} (scale {off[1]:.3g}, atol "
                f"{atol:g}) at {where}; report the model or raise atol"
            )


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` to an ONNX file whose batch and sequence axes may vary, atomically.

    With ``dynamic_batch``, dim 0 of every tensor input is the batch, and dim 1 of every token input
    (integer or boolean, rank 2: ``input_ids``, ``attention_mask`` …) a sequence; image axes stay
    fixed. ``dynamic_axes`` (``{input: {axis: name}}``) replaces that for the inputs it names. Tries
    ``torch.onnx.export``'s dynamo exporter first, then ``dynamo=False`` (logged). Tensor inputs are
    named ``input`` (``input_i``) or by keyword, outputs ``output_i``. With ``check`` the file is run in
    ONNX Runtime at the example inputs and one longer along each dynamic axis, and must match PyTorch
    within ``atol`` × the output scale, or :class:`ExportError` is raised and no file is written.
    """
    _onnx()
    path = Path(path)
    inputs = as_inputs(example_inputs, model)
    named = inputs.named_tensors()
    names, tensors = list(named), list(named.values())
    if not tensors:
        raise ExportError("ONNX export needs at least one tensor input; pass the example inputs as tensors")
    axes = onnx_axes.dynamic_axes(names, tensors, dynamic_batch, dynamic_axes)
    for dim in onnx_axes.dims(axes):
        if onnx_axes.size_of(tensors, axes, dim) == 1:
            tensors = onnx_axes.grow(tensors, axes, dim)  # torch.export treats a size-1 dim as static
    wrapped = _Positional(model, inputs)
    with eval_mode(wrapped), torch.no_grad():
        outs = len(wrapped(*tensors))

        def write(temp: Path) -> None:
            _write_onnx(temp, wrapped, tensors, names, axes, outs)
            if check:
                _check_onnx(temp, wrapped, tensors, names, axes, atol)

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
