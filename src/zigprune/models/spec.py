"""Model specs: the text a user writes to name a model, resolved to a factory and example inputs.

Four forms, told apart by their shape:

- ``resnet20``: a zoo name (:func:`zigprune.models.names`);
- ``path/to/file.py:factory``: a function in a Python file, imported by path;
- ``package.module:factory``: a function in an importable module;
- ``hf:PATH``: a local Hugging Face model folder (``config.json`` + weights).

A spec and its keyword arguments are plain JSON, so a saved run can rebuild its model (see ``zigprune.io``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, first_line

SPEC_FORMS = "path/to/file.py:factory, package.module:factory or hf:PATH"
FORMS = f"a zoo name, {SPEC_FORMS}"
TEXT_SEQUENCE = 16
HEAD_SUFFIXES = ("ForImageClassification", "ForSequenceClassification")


@dataclass(frozen=True)
class ModelSpec:
    """A model named by ``text`` (as the user wrote it) and the JSON-able keyword arguments of its factory."""

    text: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"zoo"``, ``"file"``, ``"module"`` or ``"hf"``."""
        return kind_of(self.text)

    def build(self) -> nn.Module:
        """A fresh model; every failure is a :class:`ModelError` saying what to fix."""
        model = _KINDS[self.kind].build(self)
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"model spec {self.text!r} returned {type(model).__name__}, not a torch.nn.Module; "
                "make the factory return the model"
            )
        return model

    def example_inputs(self, batch: int = 2, input_shape: tuple[int, ...] | None = None) -> Any:
        """Deterministic example inputs: a Tensor, or a dict of keyword arguments for Hugging Face models.

        ``input_shape`` is the shape of one sample; zoo and Hugging Face models have their own default,
        factories need it.
        """
        shape = tuple(int(n) for n in input_shape) if input_shape is not None else None
        return _KINDS[self.kind].inputs(self, batch, shape)

    def absolute(self) -> ModelSpec:
        """The same spec with a factory file's path made absolute, so a saved run loads from any folder."""
        if self.kind != "file":
            return self
        target, _, name = self.text.rpartition(":")
        return ModelSpec(f"{Path(target).resolve()}:{name}", dict(self.kwargs))

    def to_json(self) -> dict[str, Any]:
        """``{"text": ..., "kwargs": ...}``, the inverse of ``ModelSpec(**data)``."""
        return {"text": self.text, "kwargs": dict(self.kwargs)}


def resolve(text: str, /, **kwargs: Any) -> ModelSpec:
    """Check ``text`` names a model (without building it) and bind the factory's keyword arguments."""
    if not isinstance(text, str) or not text.strip():
        raise ModelError(f"a model spec must be non-empty text: {FORMS}")
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"keyword arguments of model spec {text!r} must be JSON values (numbers, text, lists): {err}"
        ) from err
    spec = ModelSpec(text.strip(), dict(kwargs))
    _KINDS[spec.kind].check(spec)
    return spec


def kind_of(text: str) -> str:
    """Which of the four forms ``text`` has (see the module docstring)."""
    if text.startswith("hf:"):
        return "hf"
    target, colon, _ = text.rpartition(":")
    if not colon:
        return "zoo"
    return "file" if target.endswith(".py") or "/" in target or "\\" in target else "module"


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _call(spec: ModelSpec, factory: Callable[..., Any]) -> Any:
    """Call a factory with the spec's keyword arguments, wrapping whatever it raises."""
    try:
        return factory(**spec.kwargs)
    except Exception as err:
        raise ModelError(
            f"model spec {spec.text!r} raised {type(err).__name__}: {first_line(err)}; fix the factory or "
            f"its keyword arguments {spec.kwargs}"
        ) from err


# -- zoo ---------------------------------------------------------------------------------------------------


def check_known(text: str) -> str:
    """``text`` itself, unless it names no zoo model and no other spec: then an error listing the names."""
    spec = ModelSpec(text.strip())
    if spec.kind == "zoo":
        _check_zoo(spec)
    return text


def _check_zoo(spec: ModelSpec) -> None:
    from . import names

    if spec.text not in names():
        raise ModelError(f"unknown model {spec.text!r}; use {FORMS}; valid names: {', '.join(names())}")


def _build_zoo(spec: ModelSpec) -> nn.Module:
    from . import create

    _check_zoo(spec)
    return _call(spec, lambda **kwargs: create(spec.text, **kwargs))


def _zoo_inputs(spec: ModelSpec, batch: int, input_shape: tuple[int, ...] | None) -> torch.Tensor:
    """The zoo's registered example input; ``in_channels`` (if given) replaces its channel count."""
    from . import _entry

    _check_zoo(spec)
    entry = _entry(spec.text)
    shape = list(input_shape or entry.input_shape)
    channels = spec.kwargs.get("in_channels")
    if entry.vocab is not None:
        vocab = int(spec.kwargs.get("vocab", entry.vocab))
        return torch.randint(vocab, (batch, *shape), generator=_generator())
    if input_shape is None and channels is not None and shape:
        shape[0] = int(channels)
    return torch.randn((batch, *shape), generator=_generator())


# -- Python factories --------------------------------------------------------------------------------------


def _split(spec: ModelSpec) -> tuple[str, str]:
    target, _, name = spec.text.rpartition(":")
    if not target or not name.isidentifier():
        raise ModelError(f"model spec {spec.text!r} must end in ':factory' with a Python name; use {FORMS}")
    return target, name


def _check_file(spec: ModelSpec) -> None:
    target, _ = _split(spec)
    if not Path(target).is_file():
        raise ModelError(
            f"model file {target!r} of spec {spec.text!r} does not exist; give the path of a .py file "
            f"(relative to {Path.cwd()})"
        )


def _load_file(path: Path) -> Any:
    """Import a Python file by path, from its current source (never a stale bytecode cache)."""
    name = "zigprune_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None:
        raise ModelError(f"cannot import {str(path)!r} as a Python module; give the path of a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    except Exception as err:
        raise ModelError(
            f"could not import {str(path)!r} ({type(err).__name__}: {first_line(err)}); fix the file"
        ) from err
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _factory(spec: ModelSpec, module: Any, where: str) -> Callable[..., Any]:
    _, name = _split(spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))[:12]
        raise ModelError(
            f"{where} has no factory function {name!r}; define it or name one of: "
            f"{', '.join(found) or 'none'}"
        )
    return factory


def _build_file(spec: ModelSpec) -> Any:
    _check_file(spec)
    target, _ = _split(spec)
    return _call(spec, _factory(spec, _load_file(Path(target)), repr(target)))


def _check_module(spec: ModelSpec) -> None:
    target, _ = _split(spec)
    if not all(part.isidentifier() for part in target.split(".")):
        raise ModelError(f"{target!r} in spec {spec.text!r} is not a Python module name; use {FORMS}")


def _build_module(spec: ModelSpec) -> Any:
    _check_module(spec)
    target, _ = _split(spec)
    try:
        module = importlib.import_module(target)
    except Exception as err:
        raise ModelError(
            f"could not import module {target!r} ({type(err).__name__}: {first_line(err)}); install it or "
            "put its folder on PYTHONPATH"
        ) from err
    return _call(spec, _factory(spec, module, f"module {target!r}"))


def _factory_inputs(spec: ModelSpec, batch: int, input_shape: tuple[int, ...] | None) -> torch.Tensor:
    if input_shape is None:
        raise ModelError(
            f"model spec {spec.text!r} is a factory, so its example inputs need input_shape (the shape of "
            "one sample, e.g. (3, 32, 32))"
        )
    return torch.randn((batch, *input_shape), generator=_generator())


# -- Hugging Face folders ----------------------------------------------------------------------------------


def _hf_folder(spec: ModelSpec) -> Path:
    folder = Path(spec.text[len("hf:") :])
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{str(folder)!r} has no config.json; give hf: a local folder written by save_pretrained"
        )
    return folder


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ModelError("hf: model specs need transformers: pip install 'zigprune[hf]'") from err
    return transformers


def _hf_options(spec: ModelSpec) -> tuple[dict[str, Any], int | None]:
    """Config overrides from the spec's kwargs, and the number of labels of a requested classifier head."""
    options = {k: v for k, v in spec.kwargs.items() if v is not None}
    labels = options.pop("num_labels", options.pop("num_classes", None))
    channels = options.pop("in_channels", None)
    if channels is not None:
        options["num_channels"] = channels
    if labels is not None:
        options["num_labels"] = labels
    return options, labels


def _hf_config(spec: ModelSpec) -> Any:
    folder = _hf_folder(spec)
    options, _ = _hf_options(spec)
    try:
        return _transformers().AutoConfig.from_pretrained(folder, **options)
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(
            f"cannot read the Hugging Face config in {str(folder)!r} ({type(err).__name__}: "
            f"{first_line(err)}); fix config.json or the keyword arguments {spec.kwargs}"
        ) from err


def _main_input(config: Any, model_class: Any) -> str | None:
    """``input_ids``, ``pixel_values`` …: what the model is fed, from its class or else its config."""
    name = getattr(model_class, "main_input_name", None)
    if isinstance(name, str):
        return name
    if getattr(config, "vocab_size", None):
        return "input_ids"
    return "pixel_values" if getattr(config, "num_channels", None) else None


def _hf_class(spec: ModelSpec, config: Any) -> Any:
    """The class in ``config.architectures`` (else AutoModel), or an Auto classifier if a head is asked."""
    transformers = _transformers()
    _, labels = _hf_options(spec)
    names = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, names[0], None) if names else None
    if labels is not None and not (model_class and model_class.__name__.endswith(HEAD_SUFFIXES)):
        vision = _main_input(config, model_class) == "pixel_values"
        suffix = HEAD_SUFFIXES[0] if vision else HEAD_SUFFIXES[1]
        return getattr(transformers, f"AutoModel{suffix}")
    return model_class or transformers.AutoModel


def _check_hf(spec: ModelSpec) -> None:
    _hf_folder(spec)


def _build_hf(spec: ModelSpec) -> nn.Module:
    config = _hf_config(spec)
    _, labels = _hf_options(spec)
    extra = {"ignore_mismatched_sizes": True} if labels is not None else {}
    folder = _hf_folder(spec)
    model_class = _hf_class(spec, config)
    try:
        return model_class.from_pretrained(folder, config=config, **extra).eval()
    except Exception as err:
        raise ModelError(
            f"cannot load the Hugging Face model in {str(folder)!r} as {model_class.__name__} "
            f"({type(err).__name__}: {first_line(err)}); check its weights and config.json"
        ) from err


def _hf_inputs(spec: ModelSpec, batch: int, input_shape: tuple[int, ...] | None) -> dict[str, torch.Tensor]:
    config = _hf_config(spec)
    main = _main_input(config, _hf_class(spec, config))
    if main == "input_ids":
        ids = torch.randint(
            config.vocab_size, (batch, *(input_shape or (TEXT_SEQUENCE,))), generator=_generator()
        )
        inputs = {"input_ids": ids}
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = ids.clone()
        return inputs
    if main == "pixel_values":
        size = getattr(config, "image_size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = input_shape or (config.num_channels, height, width)
        return {"pixel_values": torch.randn((batch, *shape), generator=_generator())}
    raise ModelError(
        f"cannot make example inputs for {spec.text!r} (its main input is {main!r}); build them yourself "
        "and pass them to zp.analyze"
    )


@dataclass(frozen=True)
class _Kind:
    """How one form of spec is checked, built and fed."""

    check: Callable[[ModelSpec], None]
    build: Callable[[ModelSpec], Any]
    inputs: Callable[[ModelSpec, int, tuple[int, ...] | None], Any]


_KINDS: dict[str, _Kind] = {
    "zoo": _Kind(_check_zoo, _build_zoo, _zoo_inputs),
    "file": _Kind(_check_file, _build_file, _factory_inputs),
    "module": _Kind(_check_module, _build_module, _factory_inputs),
    "hf": _Kind(_check_hf, _build_hf, _hf_inputs),
}
