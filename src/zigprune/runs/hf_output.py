"""A Hugging Face run's slim model also as a plain ``from_pretrained`` folder, ``hf/`` in the run folder,
whenever its config can describe the widths pruning left (see ``zigprune.io.hf_folder``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from ..errors import ModelError, first_line
from ..io.hf_folder import ConfigShapeError, save_pretrained
from ..io.weights import tokenizer
from ..models.spec import ModelSpec

if TYPE_CHECKING:
    from .state import Stage

HF_FOLDER = "hf"


def save_hf_folder(stage: Stage, spec: ModelSpec, slim: nn.Module, out: Path) -> str | None:
    """Write ``out/hf`` (model, rewritten config, the model's tokenizer) for a ``hf:`` model and return
    its name; None, with one line saying why, when the config cannot describe the slim model."""
    if spec.kind != "hf":
        return None
    try:
        tok = tokenizer(spec)
    except ModelError:
        tok = None
    try:
        source = spec.text.removeprefix("hf:")
        stage.timed("save", lambda: save_pretrained(slim, out / HF_FOLDER, tokenizer=tok, source=source))
    except ConfigShapeError as err:
        stage.log(f"no from_pretrained folder ({HF_FOLDER}/): {first_line(err)}")
        return None
    stage.log(f"wrote {out / HF_FOLDER}: loads with transformers' from_pretrained")
    return HF_FOLDER
