"""The CLI's one-line errors, as every CLI test checks them."""

from __future__ import annotations

import pytest

from zigprune.cli import main


def error_of(capsys: pytest.CaptureFixture, argv: list[str], status: int = 2) -> str:
    """The single ``zigprune: ...`` line on stderr for ``argv``, which must exit with ``status``."""
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("zigprune: ") and "\n" not in err, err
    return err
