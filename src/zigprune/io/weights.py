"""Weights and tokenizers for models a run starts from: a state dict in ``.safetensors`` (never a
pickle), and a Hugging Face folder's own tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelError, first_line
from ..models.spec import ModelSpec
from .atomic import atomic_write

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict to ``path`` as ``.safetensors``, atomically (tied weights stored once),
    with ``metadata`` (text only) in its header, such as the data the model was trained on."""
    from safetensors.torch import save_model

    return atomic_write(path, lambda temp: save_model(model, str(temp), metadata=metadata))


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata in a ``.safetensors`` file's header (empty when none or unreadable)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return {}


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` state dict into ``model`` (every key must match); ``ModelError`` otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; give a .safetensors state dict of the model")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{path} is not a readable .safetensors file ({first_line(err)})") from None
    own = model.state_dict()
    missing = _missing(model, state)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        found = (("missing", missing), ("unexpected", unexpected), ("other shapes:", wrong))
        parts = [
            f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for what, keys in found if keys
        ]
        raise ModelError(
            f"the weights in {path} do not fit the model ({'; '.join(parts)}); give the state dict of the "
            "same model (same --model and --model-kwargs, and the data it was trained on)"
        )
    model.load_state_dict(state, strict=False)


def _missing(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """Keys of ``model`` that ``state`` does not fill: a tied tensor is filled by any one of its names
    (safetensors' ``save_model``, as in ``save_weights``, stores one name per shared tensor)."""
    own = model.state_dict()
    names: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for key, value in own.items():
        names.setdefault((value.data_ptr() or id(value), tuple(value.shape)), []).append(key)
    return sorted(key for keys in names.values() if not any(k in state for k in keys) for key in keys)


def tokenizer(spec: ModelSpec) -> Any:
    """The tokenizer saved with a Hugging Face model (``hf:PATH``); ``ModelError`` when there is none
    (``AutoTokenizer`` would otherwise make an empty one that maps every word to the unknown token)."""
    folder = Path(spec.text.removeprefix("hf:"))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); text data is tokenized with "
            "the model's own tokenizer: save it beside the model with tokenizer.save_pretrained(folder)"
        )
    try:
        from transformers import AutoTokenizer

        found = AutoTokenizer.from_pretrained(folder)
    except ImportError as err:
        raise ModelError("text data needs transformers: pip install 'zigprune[hf]'") from err
    except Exception as err:
        raise ModelError(
            f"cannot load a tokenizer from {folder} ({type(err).__name__}: {first_line(err)}); text data is "
            "tokenized with the model's own tokenizer, saved beside it with save_pretrained"
        ) from None
    if found.pad_token is None and found.eos_token is not None:
        found.pad_token = found.eos_token
    return found
