"""Layer timings kept on disk per machine, so a second search (another budget, another strategy, the
same layer shapes in another model) times nothing it has timed before.

One JSON file per machine (CPU model, core count and the torch and onnxruntime versions hashed) in
``$ZIGPRUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/zigprune``, else ``~/.cache/zigprune``; written
atomically, read as plain JSON (a damaged file is ignored with a warning and rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from ..io.atomic import atomic_write
from .machine import machine_info


def cache_dir() -> Path:
    """Where zigprune keeps what it measured on this machine."""
    if os.environ.get("ZIGPRUNE_CACHE_DIR"):
        return Path(os.environ["ZIGPRUNE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zigprune"


def machine_key() -> str:
    """A short hash of what makes a timing this machine's: CPU, cores and library versions."""
    info = machine_info()
    text = "|".join(str(info[k]) for k in ("processor", "cpu_count", "machine", "torch", "onnxruntime"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class TimingCache:
    """Milliseconds by key (runtime, threads, layer op and widths), loaded from and saved to ``path``."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / f"layer-latency-{machine_key()}.json"
        self.entries: dict[str, float] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
                self.entries = {str(k): float(v) for k, v in loaded.items()}
            except (ValueError, TypeError, AttributeError, OSError) as err:
                why = f"ignoring the damaged timing cache {self.path} ({err}); it will be rewritten"
                warnings.warn(why, stacklevel=2)

    def get(self, key: str) -> float | None:
        return self.entries.get(key)

    def put(self, key: str, ms: float) -> None:
        self.entries[key] = ms
        self._dirty = True

    def save(self) -> None:
        """Write the entries if any are new (a cache folder that cannot be written only warns)."""
        if not self._dirty:
            return
        text = json.dumps(self.entries, sort_keys=True)
        try:
            atomic_write(self.path, lambda temp: temp.write_text(text))
        except OSError as err:
            warnings.warn(f"could not save layer timings to {self.path} ({err})", stacklevel=2)
            return
        self._dirty = False
