"""Int8 measured, not assumed: quantize the slim ONNX model in each candidate scheme, keep the fastest
that holds its quality, and time it against the dense and slim fp32 files in one interleaved run.

On some CPUs and models int8 is slower than fp32 (rescaling around small convolutions costs more
than the integer kernels save); then the result says so and recommends the fp32 file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..io.atomic import atomic_write
from ..measure.latency import Latency, interleaved, speedup
from .quantize import SCHEMES, Scheme, preprocess_onnx, quantize_onnx
from .session import OnnxModule

Quality = Callable[[nn.Module], dict[str, float]]
INT8 = "model.int8.onnx"
#: How much of the quality measure (accuracy, or cosine to the dense model) int8 may lose and still ship.
TOLERANCE = 0.005


@dataclass
class Artefact:
    """One file compared: its size, quality figures, latency per batch and speedup over dense fp32."""

    name: str
    file: str | None
    bytes: int
    quality: dict[str, float | None]
    latency: list[dict[str, Any]] = field(default_factory=list)
    speedup: dict[str, float] = field(default_factory=dict)


@dataclass
class Tried:
    """A candidate scheme: its quality and its median time at the largest batch next to slim fp32's."""

    scheme: str
    quality: dict[str, float]
    ms: float
    fp32_ms: float
    kept_quality: bool


@dataclass
class Int8Result:
    """What ``compare_int8`` found; ``recommended`` is the file to ship, ``verdict`` says why in a line."""

    key: str
    scheme: str
    tolerance: float
    artefacts: list[Artefact]
    tried: list[Tried]
    recommended: str
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_int8(
    dense_onnx: Path,
    slim_onnx: Path,
    out_path: Path,
    calibration: Sequence[Any],
    example: Any,
    quality: Quality,
    *,
    dense_quality: dict[str, float | None],
    key: str = "accuracy",
    tolerance: float = TOLERANCE,
    schemes: Sequence[Scheme] = SCHEMES,
    batch_sizes: Sequence[int] = (1, 64),
    min_seconds: float = 0.5,
    log: Callable[[str], None] = print,
) -> Int8Result:
    """Quantize ``slim_onnx`` with each of ``schemes`` (calibrated on ``calibration``), score each in
    ONNX Runtime with ``quality`` (higher ``key`` is better), keep the fastest at the largest batch
    whose ``key`` is within ``tolerance`` of the fp32 file's (else the best scoring one), write it to
    ``out_path``, and time dense fp32, slim fp32 and slim int8 alternately at ``batch_sizes``.
    ``dense_quality`` is reported as given (the dense file may hold other weights than the trained ones).
    """
    slim_quality = quality(OnnxModule(slim_onnx))
    largest = max(batch_sizes)
    with tempfile.TemporaryDirectory(prefix="zigprune-int8-") as folder:
        paths, scores = _quantized(
            slim_onnx, calibration, Path(folder), schemes, quality, key, slim_quality, log
        )
        bar = slim_quality[key] - tolerance
        tried = _race(slim_onnx, paths, example, largest, min_seconds / 2, schemes, scores, bar, key, log)
        best = 0 if tried is None else _best(tried, scores, key)
        atomic_write(out_path, lambda temp: shutil.copyfile(paths[best], temp))
    log(f"timing dense fp32, slim fp32 and slim int8 at batch {', '.join(map(str, batch_sizes))}")
    timed = interleaved(
        [dense_onnx, slim_onnx, out_path],
        example,
        backend="onnx",
        batch_sizes=batch_sizes,
        min_seconds=min_seconds,
    )
    if tried is None:
        at = [next(x for x in lat if x.batch == largest) for lat in timed[1:]]
        tried = _tried(schemes, scores, [at[1]], at[0], bar, key)
    files = [(dense_onnx, None, dense_quality), (slim_onnx, slim_onnx.name, slim_quality)]
    files.append((out_path, out_path.name, scores[best]))
    artefacts = [
        Artefact(name, file, path.stat().st_size, dict(q), [asdict(x) for x in lat], _speedup(timed[0], lat))
        for (path, file, q), name, lat in zip(files, ("dense fp32", "slim fp32", "slim int8"), timed)
    ]
    recommended, verdict = _verdict(artefacts, tried[best], largest, key, tolerance)
    return Int8Result(key, schemes[best].label, tolerance, artefacts, tried, recommended, verdict)


def _best(tried: list[Tried], scores: list[dict[str, float]], key: str) -> int:
    """The fastest scheme that kept the quality, else the best scoring one."""
    ok = [i for i, t in enumerate(tried) if t.kept_quality]
    return min(ok, key=lambda i: tried[i].ms) if ok else max(range(len(tried)), key=lambda i: scores[i][key])


def _quantized(
    slim_onnx: Path,
    calibration: Sequence[Any],
    folder: Path,
    schemes: Sequence[Scheme],
    quality: Quality,
    key: str,
    slim_quality: dict[str, float],
    log: Callable[[str], None],
) -> tuple[list[Path], list[dict[str, float]]]:
    """``slim_onnx`` pre-processed once, then quantized with each scheme and scored."""
    paths, scores = [], []
    pre = preprocess_onnx(slim_onnx, folder / "pre.onnx")
    for i, scheme in enumerate(schemes):
        paths.append(quantize_onnx(pre, calibration, folder / f"{i}.onnx", scheme=scheme, preprocess=False))
        scores.append(quality(OnnxModule(paths[-1])))
        log(f"int8 {scheme.label}: {key} {scores[-1][key]:.4f} (fp32 {slim_quality[key]:.4f})")
    return paths, scores


def _race(
    slim_onnx: Path,
    paths: list[Path],
    example: Any,
    batch: int,
    seconds: float,
    schemes: Sequence[Scheme],
    scores: list[dict[str, float]],
    bar: float,
    key: str,
    log: Callable[[str], None],
) -> list[Tried] | None:
    """Every int8 file against slim fp32 at ``batch``, calls interleaved; None with one file (nothing to
    choose: the final timing gives its figures)."""
    if len(paths) < 2:
        return None
    log(f"timing slim fp32 and {len(paths)} int8 files at batch {batch}, calls interleaved")
    times = interleaved(
        [slim_onnx, *paths], example, backend="onnx", batch_sizes=(batch,), min_seconds=seconds
    )
    return _tried(schemes, scores, [t[0] for t in times[1:]], times[0][0], bar, key)


def _tried(
    schemes: Sequence[Scheme],
    scores: list[dict[str, float]],
    times: list[Latency],
    fp32: Latency,
    bar: float,
    key: str,
) -> list[Tried]:
    return [
        Tried(s.label, q, t.median_ms, fp32.median_ms, q[key] >= bar)
        for s, q, t in zip(schemes, scores, times)
    ]


def _speedup(dense: list[Latency], times: list[Latency]) -> dict[str, float]:
    """Dense over each batch's median (str batch keys, as JSON keeps them)."""
    return {str(b): v for b, v in speedup(dense, times).items()}


def _verdict(
    artefacts: list[Artefact], chosen: Tried, batch: int, key: str, tolerance: float
) -> tuple[str, str]:
    """The file to ship and why: int8 only when it is faster than slim fp32 and keeps the quality; the
    line also says what the other file is for."""
    fp32, int8 = artefacts[1], artefacts[2]
    ms = {a.name: next(x["median_ms"] for x in a.latency if x["batch"] == batch) for a in (fp32, int8)}
    ratio = ms["slim fp32"] / ms["slim int8"]
    lost = fp32.quality[key] - int8.quality[key]
    if not chosen.kept_quality:
        return fp32.file or "", (
            f"int8 loses more than {tolerance:g} {key} in every scheme tried (the best, {chosen.scheme}, "
            f"loses {lost:.4g} and is {ratio:.2f}x faster): ship {fp32.file} (fp32); {int8.file} holds that "
            "best int8 model, for a looser --int8-tolerance"
        )
    if ratio <= 1:
        return fp32.file or "", (
            f"int8 is slower than fp32 for this model on this machine ({ms['slim int8']:.2f} vs "
            f"{ms['slim fp32']:.2f} ms at batch {batch}): ship {fp32.file} (fp32); {int8.file} is kept for "
            "machines with faster int8 kernels"
        )
    return int8.file or "", (
        f"int8 ({chosen.scheme}) is {ratio:.2f}x faster than slim fp32 at batch {batch} and loses {lost:.4g} "
        f"{key}: ship {int8.file}; {fp32.file} is the fp32 reference"
    )
