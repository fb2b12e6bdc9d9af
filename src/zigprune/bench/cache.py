"""One JSON file per finished (method, seed) run, so an interrupted bench resumes where it stopped.

A cached run is reused only when its fingerprint (every setting that changes its result) matches;
files are written atomically, and unreadable or foreign files are ignored (the run is redone).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write


def fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``settings``."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunCache:
    """Finished runs under ``folder`` as ``<method>--seed<k>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, method: str, seed: int) -> Path:
        """Where the run (``method``, ``seed``) is cached."""
        return self.folder / f"{method}--seed{seed}.json"

    def get(self, method: str, seed: int, key: str) -> dict[str, Any] | None:
        """The cached record of (``method``, ``seed``) if its fingerprint is ``key``, else None."""
        try:
            record = json.loads(self.path(method, seed).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("fingerprint") == key else None

    def put(self, record: dict[str, Any]) -> None:
        """Store a finished run (a dict with ``method``, ``seed`` and ``fingerprint``)."""
        data = json.dumps(record, indent=1).encode()
        atomic_write(self.path(record["method"], int(record["seed"])), lambda temp: temp.write_bytes(data))
