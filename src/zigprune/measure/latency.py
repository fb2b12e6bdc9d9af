"""How fast a model really is: robust wall-clock latency in eager PyTorch and in ONNX Runtime.

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

from ..core.trace import eval_mode
from ..errors import ZigpruneError

Call = Callable[[], Any]


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
    example: Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> list[Latency]:
    """Latency of ``model`` in eager PyTorch (eval mode, ``inference_mode``), one entry per batch size.

    ``example`` is one input batch; batches of each size are sliced from it or repeat it. Torch runs
    with ``threads`` intra-op threads while timing (default 1: see the module docstring), then the
    previous setting is restored.
    """
    return _time(_BACKENDS["torch"], [model], example, batch_sizes, warmup, repeats, min_seconds, threads)[0]


def measure_onnx(
    path: str | Path,
    example: Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    min_seconds: float = 0.5,
    threads: int = 1,
) -> list[Latency]:
    """Latency of the ONNX model at ``path`` in ONNX Runtime's CPU provider, one entry per batch size.

    The session gets the same ``threads`` as ``measure`` gives torch (default 1), one inter-op thread,
    sequential execution and no spin-waiting, so it neither oversubscribes a small machine nor burns
    cores between calls while another model is timed.
    """
    return _time(_BACKENDS["onnx"], [path], example, batch_sizes, warmup, repeats, min_seconds, threads)[0]


def compare(
    dense: nn.Module | str | Path,
    slim: nn.Module | str | Path,
    example: Tensor,
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
    if backend not in _BACKENDS:
        raise LatencyError(f"unknown backend {backend!r}; use one of {', '.join(sorted(_BACKENDS))}")
    targets = [dense, slim]
    timed = _time(_BACKENDS[backend], targets, example, batch_sizes, warmup, repeats, min_seconds, threads)
    return Comparison(dense=timed[0], slim=timed[1], speedup=speedup(timed[0], timed[1]))


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


def make_batch(example: Tensor, size: int) -> Tensor:
    """A batch of ``size`` samples: the first ``size`` of ``example``, or ``example`` repeated and cut."""
    if size <= example.shape[0]:
        return example[:size].contiguous()
    copies = -(-size // example.shape[0])
    return example.repeat(copies, *([1] * (example.dim() - 1)))[:size].contiguous()


@dataclass(frozen=True)
class _Backend:
    """How to run a target at one batch: ``prepare`` enters any context and returns a call factory."""

    name: str
    prepare: Callable[[Any, ExitStack, int], Callable[[Tensor], Call]]


def _prepare_torch(model: Any, stack: ExitStack, threads: int) -> Callable[[Tensor], Call]:
    """Calls of ``model`` on a batch moved to its device, in eval mode; CUDA calls are synchronised."""
    if not isinstance(model, nn.Module):
        raise LatencyError(f"the torch backend times nn.Modules, got {type(model).__name__}")
    stack.enter_context(eval_mode(model))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else _nothing

    def bind(batch: Tensor) -> Call:
        on_device = batch.to(device)

        def call() -> None:
            model(on_device)
            sync()

        return call

    return bind


def _prepare_onnx(path: Any, stack: ExitStack, threads: int) -> Callable[[Tensor], Call]:
    """Calls of an ONNX Runtime CPU session on a batch given as its single input."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise LatencyError("ONNX latency needs onnxruntime: pip install 'zigprune[onnx]'") from err
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        raise LatencyError(
            f"no ONNX model at {path!r}: export one first (torch.onnx.export) and pass its path"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise LatencyError(f"{path} takes {len(inputs)} inputs; ONNX latency times single-input models only")
    name, fixed = inputs[0].name, inputs[0].shape[0] if inputs[0].shape else None

    def bind(batch: Tensor) -> Call:
        if isinstance(fixed, int) and fixed != batch.shape[0]:
            raise LatencyError(
                f"{path} has a fixed batch size of {fixed}, so batch {batch.shape[0]} cannot run: export it "
                f"with a dynamic batch dimension (dynamic_shapes) or pass batch_sizes=({fixed},)"
            )
        feed = {name: batch.detach().cpu().numpy()}
        return lambda: session.run(None, feed)

    return bind


def _nothing() -> None:
    """Stand-in for a device synchronisation on CPU."""


_BACKENDS = {
    "torch": _Backend("torch", _prepare_torch),
    "onnx": _Backend("onnxruntime", _prepare_onnx),
}


def _time(
    backend: _Backend,
    targets: list[Any],
    example: Tensor,
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    min_seconds: float,
    threads: int,
) -> list[list[Latency]]:
    """Per target, a Latency per batch size; the targets' calls alternate so they share the same load."""
    _check(example, batch_sizes, warmup, repeats, min_seconds, threads)
    before = torch.get_num_threads()
    results: list[list[Latency]] = [[] for _ in targets]
    with ExitStack() as stack, torch.inference_mode():
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, before)
        binders = [backend.prepare(target, stack, threads) for target in targets]
        for size in batch_sizes:
            batch = make_batch(example, size)
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
    example: Tensor,
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    min_seconds: float,
    threads: int,
) -> None:
    """Raise a LatencyError naming the first argument that cannot be timed."""
    if not isinstance(example, Tensor) or example.dim() == 0 or example.shape[0] == 0:
        raise LatencyError("example must be a Tensor holding one non-empty batch (batch dimension first)")
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batch_sizes):
        raise LatencyError(f"batch_sizes must be positive integers, got {tuple(batch_sizes)!r}")
    if warmup < 0 or repeats < 1 or min_seconds < 0:
        raise LatencyError(
            f"need warmup >= 0, repeats >= 1 and min_seconds >= 0; got {warmup}, {repeats}, {min_seconds}"
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise LatencyError(f"threads must be a positive integer, got {threads}")
