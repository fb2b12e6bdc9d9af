"""Int8 inside PyTorch: torchao's PT2E route (``torch.export``, the X86 Inductor quantizer, calibration,
conversion), then Inductor with freezing, which lowers the quantized graph to fused int8 CPU kernels.

An optional extra (``pip install 'zigprune[pt2e]'``): the slim model stays a PyTorch module, so a user
who serves with PyTorch gets int8 without leaving it (ONNX Runtime is the other route, ``quantize_onnx``).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..core.batches import checked_batch, empty_calibration
from ..core.trace import Inputs, export
from ..errors import QuantizeError, first_line

log = logging.getLogger(__name__)


class CompiledModule(nn.Module):
    """An inference model compiled by Inductor with freezing (weights folded in and prepacked, which is
    what turns a PT2E graph into fused int8 kernels), behind an ``nn.Module`` face. Calls run without
    autograd (freezing applies only there). Shapes are static: each new input shape compiles once, on
    its first call (Inductor's dynamic-shape int8 convolution kernels fail on some widths)."""

    def __init__(self, module: nn.Module, *, compiled: bool = True) -> None:
        super().__init__()
        self.module = module
        self.compiled = compiled
        self.call = torch.compile(module, dynamic=False) if compiled else module
        from torch._inductor import config  # here, not at import: it costs half a second

        self._inductor = config
        _hide_inductor_copy_warning()
        self.training = False  # not train(False): torchao refuses train/eval calls on its graphs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compiled:
            with torch.no_grad():
                return self.module(*args, **kwargs)
        # Freezing is read while Dynamo traces (on the first call of a shape), not from torch.compile's
        # options, so it is switched on around each call (a few microseconds) and restored after.
        before = self._inductor.freezing
        self._inductor.freezing = True
        try:
            with torch.no_grad():
                return self.call(*args, **kwargs)
        finally:
            self._inductor.freezing = before

    def train(self, mode: bool = True) -> CompiledModule:
        """Inference only: ``eval()`` / ``train(False)`` are accepted and change nothing."""
        if mode:
            raise QuantizeError("a compiled inference model cannot train; fine-tune the fp32 model instead")
        return self


def _hide_inductor_copy_warning() -> None:
    """Inductor's int8 convolution lowering builds a tensor with ``torch.tensor(tensor)``, which warns for
    every layer it compiles; the warning is about torch's own code, not the caller's, so it is hidden
    (adding the same filter again moves it to the front; the list does not grow)."""
    warnings.filterwarnings(
        "ignore",
        message="To copy construct from a tensor",
        category=UserWarning,
        module=r"torch\._inductor\.mkldnn_lowerings",
    )


def quantize_pt2e(
    model: nn.Module,
    calibration: Iterable[Any],
    *,
    dynamic_batch: bool = True,
    compile: bool = True,
) -> CompiledModule:
    """Return an int8 copy of ``model`` (which is left unchanged) made by torchao's PT2E route.

    ``calibration`` is an iterable of model inputs (a Tensor, a tuple of positional args or a dict of
    keyword args per batch); the first batch is also the example ``torch.export`` traces, with its batch
    dimension dynamic when ``dynamic_batch`` (so other batch sizes run). Weights are int8 per channel,
    activations int8 per tensor (X86InductorQuantizer's default, static). With ``compile`` the result is
    compiled by Inductor with freezing on its first call (seconds to a minute); without it the quantized
    graph runs as reference ops (slow, for checking accuracy). Raises :class:`QuantizeError` when torchao
    is not installed, the calibration is empty or holds NaN/Inf, or quantization fails.
    """
    prepare, convert, quantizer = _torchao()
    batches = (checked_batch(batch, i, QuantizeError, model) for i, batch in enumerate(calibration))
    inputs = next(batches, None)
    if inputs is None:
        raise empty_calibration(QuantizeError)
    graph = _export(model, inputs, dynamic_batch).module()
    try:
        prepared = prepare(graph, quantizer)
    except Exception as err:
        raise QuantizeError(f"torchao could not prepare {type(model).__name__} ({first_line(err)})") from err
    count = 0
    with torch.no_grad():
        for batch in itertools.chain([inputs], batches):
            _feed(prepared, batch)
            count += 1
    try:
        quantized = convert(prepared)
    except Exception as err:
        raise QuantizeError(f"torchao could not convert {type(model).__name__} ({first_line(err)})") from err
    log.info("PT2E int8 of %s calibrated on %d batches", type(model).__name__, count)
    return CompiledModule(quantized, compiled=compile)


def _torchao() -> tuple[Any, Any, Any]:
    """torchao's prepare/convert and an X86 Inductor quantizer, or a QuantizeError telling how to install."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise QuantizeError(
            f"PT2E int8 needs torchao ({first_line(err)}): pip install 'zigprune[pt2e]'"
        ) from None
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    return prepare_pt2e, convert_pt2e, quantizer


def _export(model: nn.Module, inputs: Inputs, dynamic_batch: bool) -> torch.export.ExportedProgram:
    """``torch.export`` of the model, with every tensor input's first dimension dynamic if asked."""
    if not dynamic_batch:
        return export(model, inputs)
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
    except TypeError as err:
        raise QuantizeError(
            f"the calibration batch does not fit {type(model).__name__}.forward ({err})"
        ) from None
    return export(model, inputs, {name: _batch_dim(v) for name, v in bound.arguments.items()})


def _batch_dim(value: Any) -> Any:
    """torch.export's dynamic-shape spec for one argument: dim 0 of each tensor free, the rest static."""
    if torch.is_tensor(value):
        return {0: torch.export.Dim.AUTO}
    if isinstance(value, tuple | list):
        return tuple(_batch_dim(v) for v in value)
    if isinstance(value, dict):
        return {k: _batch_dim(v) for k, v in value.items()}
    return None


def _feed(prepared: nn.Module, batch: Inputs) -> None:
    """One calibration batch through the observed graph; a batch that does not fit is a QuantizeError."""
    try:
        batch.call(prepared)
    except Exception as err:
        raise QuantizeError(
            f"a calibration batch does not fit the traced model ({type(err).__name__}: {first_line(err)}); "
            "pass batches shaped like the first one"
        ) from None
