"""Policies on disk: plain JSON written atomically, read without running anything."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.policy import Policy
from ..errors import PolicyError
from ..io.atomic import atomic_write


def save_policy(policy: Policy, path: str | Path) -> Path:
    """Write ``policy`` to ``path`` as JSON, atomically (a reader never sees half a file)."""
    text = json.dumps(policy.to_dict(), indent=1)
    return atomic_write(path, lambda temp: temp.write_text(text))


def load_policy(path: str | Path) -> Policy:
    """The policy saved at ``path``; a PolicyError when it is missing or not a policy."""
    try:
        return Policy.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as err:
        raise PolicyError(f"cannot read a policy from {path}: {err}") from err
