"""A run's data, loaded one way for every job (compress, prune, export, eval): the dataset and the
model spec fitted to it, and from them the calibration batches, held-out batches, example inputs and
the quality measure (accuracy for labelled data, fidelity to the dense model for text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import data
from ..data.text import TokenizedLines, is_text, load_text, tokenized
from ..io.weights import tokenizer
from ..measure.fidelity import follows
from ..models import fit_kwargs
from ..models.spec import ModelSpec, resolve
from ..training import evaluate, fetch, sample_inputs

Quality = Callable[[nn.Module], dict[str, float]]


@dataclass
class RunData:
    """The dataset a run uses, its fitted model spec, and (text) the lines it is evaluated on.

    ``evaluated`` says in words what ``held_out`` and ``quality`` measure on.
    """

    name: str
    dataset: data.Dataset
    spec: ModelSpec
    evaluation: TokenizedLines | None = None
    evaluated: str = ""

    @property
    def labelled(self) -> bool:
        return self.dataset.num_classes > 0

    def calibration(self, samples: int, *, seed: int = 0, batch_size: int = 32) -> list[Any]:
        """``samples`` training inputs drawn at random (fixed by ``seed``), in batches: the one recipe
        post-training pruning and int8 calibrate with."""
        return sample_inputs(self.dataset.train, samples, seed=seed, batch_size=batch_size)

    def held_out(self, batch_size: int) -> list[Any]:
        """The evaluation inputs in order, batched: the test split, or for text the evaluation lines."""
        test = self.evaluation if self.evaluation is not None else self.dataset.test
        return [fetch(test, idx)[0] for idx in torch.arange(len(test)).split(batch_size)]

    def example(self, count: int) -> Any:
        """The first ``count`` evaluation inputs as one batch."""
        test = self.evaluation if self.evaluation is not None else self.dataset.test
        return fetch(test, torch.arange(min(count, len(test))))[0]

    def quality(self, dense: nn.Module | None = None, batch_size: int = 32) -> Quality:
        """Test accuracy for labelled data; for text, how closely a model follows ``dense`` on the
        evaluation lines (:func:`zigprune.measure.fidelity.follows`)."""
        if self.labelled:
            return lambda model: {"accuracy": evaluate(model, self.dataset.test).accuracy}
        if dense is None:
            raise ValueError("text runs measure fidelity to the dense model: pass dense")
        return follows(dense, self.held_out(batch_size))


def load_run_data(
    model: str | ModelSpec,
    name: str,
    *,
    data_dir: str | None = None,
    subset: int | None = None,
    max_length: int = 128,
    model_kwargs: dict[str, Any] | None = None,
    eval_data: str | None = None,
) -> RunData:
    """Dataset ``name`` and the spec of ``model`` fitted to it (a zoo model's channels and classes, a
    Hugging Face model's number of labels; a given ``ModelSpec`` is used as it is). Text is tokenized
    with the model's own tokenizer and evaluated on ``eval_data``'s lines when given (the user's own
    domain), else on the held-out lines of ``name``."""
    kwargs = dict(model_kwargs or {})
    if is_text(name):
        spec = model if isinstance(model, ModelSpec) else resolve(model, **kwargs)
        tok = tokenizer(spec)
        dataset = tokenized(name, tok, max_length=max_length, subset=subset)
        lines, evaluated = evaluation_lines(name, eval_data)
        other = eval_data is not None and eval_data != name
        evaluation = TokenizedLines(tok, lines, max_length=max_length) if other else dataset.test
        return RunData(name, dataset, spec, evaluation, evaluated)
    dataset = data.load(name, data_dir, subset=subset)
    spec = model if isinstance(model, ModelSpec) else fit_spec(model, dataset, kwargs)
    return RunData(name, dataset, spec, evaluated=f"the {len(dataset.test)} test samples of {name}")


def fit_spec(model: str, dataset: data.Dataset, model_kwargs: dict[str, Any] | None = None) -> ModelSpec:
    """The spec of ``model`` with the keyword arguments that fit it to ``dataset`` (a zoo model's
    channels, classes and image size, only what its factory takes; a Hugging Face model's number of
    labels), the user's ``model_kwargs`` winning."""
    kind = ModelSpec(model).kind
    fitted = fit_kwargs(model, dataset.input_shape, dataset.num_classes) if kind == "zoo" else {}
    if kind == "hf":
        fitted = {"num_labels": dataset.num_classes}
    return resolve(model, **{**fitted, **(model_kwargs or {})})


def evaluation_lines(name: str, eval_data: str | None = None) -> tuple[list[str], str]:
    """The lines a text run is evaluated on, and what they are in words: every line of ``eval_data``
    when given (a file of the user's own domain), else the held-out lines of ``name``."""
    if eval_data is not None and eval_data != name:
        text = load_text(eval_data)
        return text.train + text.test, f"{len(text.train) + len(text.test)} lines of {eval_data}"
    held_out = load_text(name).test
    return held_out, f"{len(held_out)} held-out lines of {name}"
