"""Drop harmless log lines that optional libraries print on every Hugging Face load or ONNX export.

With torchao installed (the ``pt2e`` extra), importing transformers' quantizers logs that torchao's
CUDA-only kernels did not load ("Failed to load .../_C_mxfp8...so"), and torchao registers enums
in a way torch calls deprecated; torch's ONNX exporter says, on every export, that torchvision's ops
are not registered when torchvision is not installed. All are noise on a CPU; only these messages
are filtered, every other record of those loggers still shows.
"""

from __future__ import annotations

import logging

NOISE = {
    "torchao": ("Failed to load",),
    "torch.utils._pytree": ("register_constant() on Enum subclasses is deprecated",),
    "torch.onnx._internal.exporter._registration": ("torchvision is not installed",),
}


class _Drop(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_optional_libraries() -> None:
    """Add the filters once (idempotent)."""
    for name, fragments in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(fragments))
