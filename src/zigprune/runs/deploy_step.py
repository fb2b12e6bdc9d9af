"""The deployment sections of a run: ``--int8`` (the slim ONNX file quantized, measured against dense
and slim fp32) and ``--share-bits`` (weight sharing, before and after a short centroid fine-tune)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data
from ..deploy import INT8, compare_int8, finetune_centroids, save_shared, share_weights
from ..deploy.int8 import TOLERANCE
from ..deploy.quantize import SCHEMES
from ..measure.fidelity import follows
from ..training import evaluate, fetch, sample_inputs
from ..training.objective import Distillation, Objective
from .optimizers import LATENCY_BATCHES

SHARED = "model.shared.safetensors"
CALIBRATION_SAMPLES = 256
FINETUNE_STEPS = 300


@dataclass
class DeployData:
    """What the deployment sections measure with: calibration batches (training inputs, a fixed seed),
    training batches for the centroid fine-tune and its objective (None: distil from the slim fp32 model
    itself, labels mixed in), the quality measure (``key`` is its headline, higher is better), the dense
    model's quality, and an example batch."""

    calibration: list[Any]
    train: list[tuple[Any, torch.Tensor]]
    objective: Objective | None
    quality: Callable[[nn.Module], dict[str, float]]
    key: str
    dense_quality: dict[str, float | None]
    example: Any


def deploy_data(
    dataset: data.Dataset, dense: nn.Module, dense_accuracy: float | None, batch_size: int, seed: int
) -> DeployData:
    """Image runs score accuracy on the test split; text runs the cosine to ``dense`` on held-out lines."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset.train), generator=generator)
    chunks = order.split(batch_size)
    train = [fetch(dataset.train, idx.sort().values) for idx in chunks[:FINETUNE_STEPS]]
    calibration = sample_inputs(dataset.train, CALIBRATION_SAMPLES, seed=seed)
    if dataset.num_classes:
        example = fetch(dataset.test, torch.arange(min(len(dataset.test), max(LATENCY_BATCHES))))[0]
        return DeployData(
            calibration, train, None, lambda m: {"accuracy": evaluate(m, dataset.test).accuracy},
            "accuracy", {"accuracy": dense_accuracy}, example,
        )  # fmt: skip
    held_out = dataset.test.batches(max(LATENCY_BATCHES))
    distill = Distillation(dense, labelled=False)  # freezes ``dense``: nothing trains it any more
    return DeployData(
        calibration, train, distill, follows(dense, held_out), "cosine", {"cosine": 1.0}, held_out[0]
    )


def int8_section(
    log: Callable[[str], None],
    out: Path,
    slim_onnx: Path,
    dense_onnx: Path,
    inputs: DeployData,
    seconds: float,
    tolerance: float | None = None,
    keep_layers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``model.int8.onnx`` in ``out`` and the comparison ``compare_int8`` makes, as a metrics section
    (int8 ships when it loses at most ``tolerance`` of the quality measure; default ``TOLERANCE``);
    every scheme tried keeps the layers in ``keep_layers`` in fp32."""
    result = compare_int8(
        dense_onnx,
        slim_onnx,
        out / INT8,
        inputs.calibration,
        inputs.example,
        inputs.quality,
        dense_quality=inputs.dense_quality,
        key=inputs.key,
        tolerance=TOLERANCE if tolerance is None else tolerance,
        schemes=tuple(replace(scheme, keep_layers=keep_layers) for scheme in SCHEMES),
        batch_sizes=LATENCY_BATCHES,
        min_seconds=seconds,
        log=log,
    )
    log(result.verdict)
    return result.as_dict()


def sharing_section(
    log: Callable[[str], None], out: Path, slim: nn.Module, bits: int, inputs: DeployData, progress: bool
) -> dict[str, Any]:
    """Weight sharing of a copy of ``slim`` at ``bits``: quality before and after the centroid fine-tune,
    ``model.shared.safetensors`` (the fine-tuned codebooks) and its size next to the fp32 file's."""
    shared = copy.deepcopy(slim).eval()
    sharing = share_weights(shared, bits)
    before = inputs.quality(shared)
    log(f"weight sharing at {bits} bits: {inputs.key} {before[inputs.key]:.4f} before the fine-tune")
    # The fine-tune recovers what sharing changed, so by default it follows the slim fp32 model's outputs;
    # a small training set is cycled so that every run gets the same step budget.
    objective = inputs.objective or Distillation(copy.deepcopy(slim), labelled=True)
    epochs = max(1, FINETUNE_STEPS // max(len(inputs.train), 1))
    losses = finetune_centroids(
        shared, sharing, inputs.train, epochs=epochs, objective=objective, progress=progress
    )
    after = inputs.quality(shared)
    log(f"weight sharing at {bits} bits: {inputs.key} {after[inputs.key]:.4f} after {len(losses)} steps")
    path = save_shared(shared, sharing, out / SHARED)
    fp32 = out / "model.safetensors"
    return {
        "bits": bits,
        "key": inputs.key,
        "slim": inputs.quality(slim),
        "shared": before,
        "finetuned": after,
        "steps": len(losses),
        "sizes": sharing.sizes(),
        "file": SHARED,
        "file_bytes": path.stat().st_size,
        "fp32_file_bytes": fp32.stat().st_size if fp32.is_file() else None,
    }
