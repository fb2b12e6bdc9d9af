"""How fast a model really is: robust wall-clock latency in eager PyTorch and in ONNX Runtime.

The example is what ``zp.analyze`` takes: a Tensor, a tuple of positional arguments or a dict of
keyword arguments (Hugging Face style); batches of each size are built along dim 0 of its tensors.
Each (model, batch size) is timed call by call after a warm-up, for at least ``repeats`` calls and
at least ``min_seconds``; the median is the headline and p10/p90 show the spread. ``compare`` times
two models alternately, call by call, so background load on a shared machine hits both alike.

Timing is single-threaded by default, in both backends alike: on a loaded machine, multi-threaded
kernels wait on threads that are descheduled and a 1 ms matmul can take 30 ms, burying any
difference between models. Pass ``threads=`` (e.g. ``torch.get_num_threads()``) for a quiet machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.trace import Inputs, as_inputs, eval_mode
from ..errors import ExampleInputError, ZigpruneError
from ..io import ort
from ..registry import Registry

Call = Callable[[], Any]
Bind = Callable[[Inputs], Call]
EXAMPLE_FORMS = (
    "a Tensor, a tuple of positional arguments or a dict of keyword arguments holding one non-empty batch "
    "(batch dimension first)"
)


class LatencyError(ZigpruneError, ValueError):
    """Latency cannot be measured as asked (bad arguments, missing onnxruntime, fixed-batch ONNX model)."""


@dataclass
class Latency:
    """Wall-clock time of one forward pass at one batch size, in milliseconds."""

    backend: str
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


@dataclass
class Comparison:
    """Interleaved timings of a dense and a slim model, and the per-batch speedup (dense / slim median)."""

    dense: list[Latency]
    slim: list[Latency]
    speedup: dict[int, float]


def measure(
    model: nn.Module,
    example: Any,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> list[Latency]:
    """Latency of ``model`` in eager PyTorch (eval mode, ``inference_mode``), one entry per batch size.

    ``example`` is one input batch; batches of each size are sliced from it or repeat it (see
    ``make_batch``); Hugging Face models run with ``use_cache=False``, as ``zp.analyze`` runs them. Torch
    runs with ``threads`` intra-op threads while timing (default 1: see the module docstring), then the
    previous setting is restored.
    """
    return _time(_BACKENDS["torch"], [model], example, batch_sizes, warmup, repeats, min_seconds, threads)[0]


def measure_onnx(
    path: str | Path,
    example: Any,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> list[Latency]:
    """Latency of the ONNX model at ``path`` in ONNX Runtime's CPU provider, one entry per batch size.

    The example's tensors feed the model's inputs by the names ``zp.export_onnx`` gives them (``input``,
    ``input_i``, keywords), or in order when the file names them otherwise.

    The session gets the same ``threads`` as ``measure`` gives torch (default 1), one inter-op thread,
    sequential execution and no spin-waiting, so it neither oversubscribes a small machine nor burns
    cores between calls while another model is timed.
    """
    return _time(_BACKENDS["onnx"], [path], example, batch_sizes, warmup, repeats, min_seconds, threads)[0]


def compare(
    dense: nn.Module | str | Path,
    slim: nn.Module | str | Path,
    example: Any,
    *,
    backend: str = "torch",
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> Comparison:
    """Time ``dense`` and ``slim`` alternately, call by call, and report both and the speedup.

    ``backend`` is ``"torch"`` (two modules) or ``"onnx"`` (two ``.onnx`` paths); the other arguments
    are those of ``measure``, and ``min_seconds`` applies to each model.
    """
    timing = {"batch_sizes": batch_sizes, "warmup": warmup, "repeats": repeats, "min_seconds": min_seconds}
    timed = interleaved([dense, slim], example, backend=backend, threads=threads, **timing)
    return Comparison(dense=timed[0], slim=timed[1], speedup=speedup(timed[0], timed[1]))


def interleaved(
    targets: Sequence[nn.Module | str | Path],
    example: Any,
    *,
    backend: str = "torch",
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> list[list[Latency]]:
    """Time any number of targets alternately, call by call, as ``compare`` times two; one list per target."""
    return _time(
        _BACKENDS[backend], list(targets), example, batch_sizes, warmup, repeats, min_seconds, threads
    )


def speedup(dense: list[Latency], slim: list[Latency]) -> dict[int, float]:
    """Dense median over slim median for every batch size timed in both (above 1: slim is faster)."""
    slim_ms = {lat.batch: lat.median_ms for lat in slim}
    return {lat.batch: lat.median_ms / slim_ms[lat.batch] for lat in dense if lat.batch in slim_ms}


def fastest_ms(call: Call, repeats: int = 5, threads: int = 1) -> float:
    """Fastest of ``repeats`` timed calls (ms) after one warm-up, on ``threads`` threads, no autograd.

    Load only ever adds time, so the fastest call is the least noisy figure for comparing kernels.
    """
    before = torch.get_num_threads()
    best = float("inf")
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return best * 1e3


def make_batch(example: Any, size: int) -> Any:
    """A batch of ``size`` samples in the example's form: the first ``size``, or the samples repeated in turn.

    Every tensor input whose dim 0 is the example's batch is cut or repeated along it with the same rows,
    so token ids stay paired with their attention mask; other inputs are kept as they are.
    """
    batch = _batch(_inputs(example), size)
    if isinstance(example, Tensor):
        return batch.args[0]
    if isinstance(example, dict):
        return batch.kwargs
    return type(example)(batch.args) if isinstance(example, (tuple, list)) else batch


def _inputs(example: Any) -> Inputs:
    """The example as Inputs, with one non-empty batch; a LatencyError otherwise."""
    try:
        inputs = as_inputs(example)
    except ExampleInputError:
        raise LatencyError(f"example must be {EXAMPLE_FORMS}, not {type(example).__name__}") from None
    batched = [t for t in inputs.tensors() if t.dim()]
    if not batched or batched[0].shape[0] == 0:
        raise LatencyError(f"example must be {EXAMPLE_FORMS}")
    return inputs


def _batch(inputs: Inputs, size: int) -> Inputs:
    """``inputs`` with ``size`` rows (``0, 1, …, n-1, 0, 1, …``) of every tensor batched like the first."""
    n = next(int(t.shape[0]) for t in inputs.tensors() if t.dim())
    rows = torch.arange(size) % n

    def take(value: Any) -> Any:
        if isinstance(value, Tensor) and value.dim() and value.shape[0] == n:
            return value.index_select(0, rows.to(value.device))
        return value

    return Inputs(tuple(take(v) for v in inputs.args), {k: take(v) for k, v in inputs.kwargs.items()})


@dataclass(frozen=True)
class _Backend:
    """How to run a target at one batch: ``prepare`` enters any context and returns a call factory."""

    name: str
    prepare: Callable[[Any, ExitStack, int], Bind]


def _prepare_torch(model: Any, stack: ExitStack, threads: int) -> Bind:
    """Calls of ``model`` on a batch moved to its device, in eval mode; CUDA calls are synchronised."""
    if not isinstance(model, nn.Module):
        raise LatencyError(f"the torch backend times nn.Modules, got {type(model).__name__}")
    stack.enter_context(eval_mode(model))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else _nothing

    defaults = as_inputs((), model).kwargs  # use_cache=False for Hugging Face models, as analyze runs them

    def bind(batch: Inputs) -> Call:
        moved = Inputs(
            tuple(_to(v, device) for v in batch.args),
            {**defaults, **{k: _to(v, device) for k, v in batch.kwargs.items()}},
        )

        def call() -> None:
            moved.call(model)
            sync()

        return call

    return bind


def _prepare_onnx(path: Any, stack: ExitStack, threads: int) -> Bind:
    """Calls of an ONNX Runtime CPU session on a batch, its tensors fed to the model's inputs."""
    if not isinstance(path, (str, Path)):
        raise LatencyError(f"no ONNX model at {path!r}: export one first (zp.export_onnx) and pass its path")
    session = ort.open_session(path, threads=threads, timing=True, error=LatencyError)
    takes = session.get_inputs()

    def bind(batch: Inputs) -> Call:
        arrays = ort.arrays(ort.feed(path, takes, batch, LatencyError))
        return lambda: session.run(None, arrays)

    return bind


def _to(value: Any, device: torch.device) -> Any:
    """A tensor moved to ``device``; anything else as it is."""
    return value.to(device) if isinstance(value, Tensor) else value


def _nothing() -> None:
    """Stand-in for a device synchronisation on CPU."""


_BACKENDS: Registry[_Backend] = Registry(
    "backend",
    {"onnx": _Backend("onnxruntime", _prepare_onnx), "torch": _Backend("torch", _prepare_torch)},
    LatencyError,
)


def _time(
    backend: _Backend,
    targets: list[Any],
    example: Any,
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    min_seconds: float,
    threads: int,
) -> list[list[Latency]]:
    """Per target, a Latency per batch size; the targets' calls alternate so they share the same load."""
    _check(batch_sizes, warmup, repeats, min_seconds, threads)
    inputs = _inputs(example)
    before = torch.get_num_threads()
    results: list[list[Latency]] = [[] for _ in targets]
    with ExitStack() as stack, torch.inference_mode():
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, before)
        binders = [backend.prepare(target, stack, threads) for target in targets]
        for size in batch_sizes:
            batch = _batch(inputs, size)
            calls = [bind(batch) for bind in binders]
            for times, out in zip(_interleave(calls, warmup, repeats, min_seconds), results):
                out.append(_summarise(backend.name, size, times))
    return results


def _interleave(calls: list[Call], warmup: int, repeats: int, min_seconds: float) -> list[list[float]]:
    """Seconds per call of each function, run in turn until each has ``repeats`` and ``min_seconds``."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    while len(times[0]) < repeats or min(sum(t) for t in times) < min_seconds:
        for call, out in zip(calls, times):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return times


def _summarise(backend: str, batch: int, seconds: list[float]) -> Latency:
    """Median, 10th and 90th percentile (linear interpolation) of the timings, in milliseconds."""
    q = torch.quantile(
        torch.tensor(seconds, dtype=torch.float64), torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64)
    )
    median, p10, p90 = (float(v) * 1e3 for v in q)
    return Latency(
        backend=backend, batch=batch, median_ms=median, p10_ms=p10, p90_ms=p90, repeats=len(seconds)
    )


def _check(
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    min_seconds: float,
    threads: int,
) -> None:
    """Raise a LatencyError naming the first argument that cannot be timed."""
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batch_sizes):
        raise LatencyError(f"batch_sizes must be positive integers, got {tuple(batch_sizes)!r}")
    if warmup < 0 or repeats < 1 or min_seconds < 0:
        raise LatencyError(
            f"need warmup >= 0, repeats >= 1 and min_seconds >= 0; got {warmup}, {repeats}, {min_seconds}"
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise LatencyError(f"threads must be a positive integer, got {threads}")
