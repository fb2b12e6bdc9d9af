"""Model + example inputs -> ``torch.export`` graph (ATen ops with module and parameter provenance)."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ExampleInputError, ModelError, TraceError, first_line


@dataclass
class Inputs:
    """Example inputs split into positional and keyword arguments."""

    args: tuple
    kwargs: dict[str, Any]

    def call(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def tensors(self) -> list[torch.Tensor]:
        """The tensor arguments: positional ones first, then keyword ones in order."""
        return [v for v in (*self.args, *self.kwargs.values()) if isinstance(v, torch.Tensor)]

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """The tensor arguments by name, as ONNX export names them: ``input`` (or ``input_0``, ``input_1``
        …) for positional ones, then the keyword ones by keyword."""
        args = [v for v in self.args if isinstance(v, torch.Tensor)]
        names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
        kwargs = {k: v for k, v in self.kwargs.items() if isinstance(v, torch.Tensor)}
        return {**dict(zip(names, args)), **kwargs}


def as_inputs(example_inputs: Any, model: nn.Module | None = None) -> Inputs:
    """Accept a Tensor, a tuple/list of positional args, or a dict of keyword args (Hugging Face style)."""
    if model is not None and not isinstance(model, nn.Module):
        raise ModelError(
            f"zigprune works on a torch.nn.Module, not a {type(model).__name__}; wrap the function in an "
            "nn.Module whose forward() calls it"
        )
    if isinstance(example_inputs, Inputs):
        return example_inputs
    if isinstance(example_inputs, torch.Tensor):
        inputs = Inputs((example_inputs,), {})
    elif isinstance(example_inputs, tuple | list):
        inputs = Inputs(tuple(example_inputs), {})
    elif isinstance(example_inputs, dict):
        inputs = Inputs((), dict(example_inputs))
    else:
        raise ExampleInputError(
            "example_inputs must be a Tensor, a tuple of positional arguments or a dict of keyword "
            f"arguments, not {type(example_inputs).__name__}"
        )
    if model is not None and "use_cache" in _parameters(model) and "use_cache" not in inputs.kwargs:
        inputs.kwargs["use_cache"] = False
    return inputs


def _parameters(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (running BN statistics, no dropout) and restore every module's flag after."""
    flags = [(m, m.training) for m in model.modules()]
    if not any(flag for _, flag in flags):  # already in eval mode (every probe copy): nothing to switch
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def run(model: nn.Module, inputs: Inputs) -> Any:
    """Run the model once on the example inputs, turning failures into a clear error."""
    try:
        with torch.no_grad(), eval_mode(model):
            return inputs.call(model)
    except Exception as err:
        raise ExampleInputError(
            f"{type(model).__name__} does not run on the example inputs "
            f"({type(err).__name__}: {first_line(err)}). "
            "Pass inputs the model's forward() accepts: a Tensor, a tuple of positional arguments, "
            "or a dict of keyword arguments."
        ) from err


def export(model: nn.Module, inputs: Inputs, dynamic_shapes: Any = None) -> torch.export.ExportedProgram:
    """Trace with ``torch.export`` (non-strict), in eval mode, without changing the model; static shapes
    unless ``dynamic_shapes`` (``torch.export``'s argument) says otherwise.

    If tracing fails, the model is run eagerly once to tell bad example inputs from untraceable code.
    """
    try:
        with torch.no_grad(), eval_mode(model), _quiet_torch_logs():
            return torch.export.export(
                model, inputs.args, inputs.kwargs, strict=False, dynamic_shapes=dynamic_shapes
            )
    except Exception as err:
        run(model, inputs)
        raise TraceError(
            f"torch.export could not trace {type(model).__name__}: {type(err).__name__}: {first_line(err)}. "
            "Try: make data-dependent control flow static (or wrap it in torch.cond), avoid Python-side "
            "tensor-to-number conversions (.item(), int(tensor)) in forward(), or trace a submodule."
        ) from err


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """Silence torch's own multi-line failure logs while tracing: the TraceError says what went wrong.

    torch.export also prints the partial graph of a failed trace straight to stderr, so stderr is held
    back during the trace and passed on only if the trace succeeds (its warnings then still show).
    """
    loggers = [
        logging.getLogger(name) for name in ("torch", "torch.export", "torch._export", "torch._dynamo")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
        sys.stderr.write(held.getvalue())
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def batch_size(example_inputs: Any) -> int:
    """The batch size of example inputs: the leading dim of the first input tensor with two dims or more.

    1 when there is none (an unbatched vector, scalars), so such inputs count as one sample.
    """
    batched = [t for t in as_inputs(example_inputs).tensors() if t.dim() >= 2]
    return max(int(batched[0].shape[0]), 1) if batched else 1
