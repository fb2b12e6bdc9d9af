"""The README's and the docs' Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"


def test_readme_examples_run() -> None:
    pytest.importorskip("transformers")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    exec(compile("\n".join(blocks), str(README), "exec"), {})


def test_cli_analyze_runs(capsys: pytest.CaptureFixture) -> None:
    from zigprune.cli import main

    assert main(["analyze", "--model", "digits_cnn", "--demo-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "prunable groups" in out and "x fewer" in out
    assert main(["analyze", "--model", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err


@pytest.mark.parametrize(
    "page",
    [
        "rules.md",
        "architecture.md",
        "huggingface.md",
        "post-training.md",
        "deploy.md",
        "large-models.md",
        "search.md",
    ],
)
def test_docs_page_examples_run(page: str) -> None:
    """Every Python block of the page, in order, in one namespace; rules registered there are undone."""
    from zigprune.rules import RULES

    if page in ("huggingface.md", "post-training.md", "large-models.md"):
        pytest.importorskip("transformers")
    if page in ("huggingface.md", "large-models.md"):
        pytest.importorskip("accelerate")
    if page == "deploy.md":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("torchao")

    doc = DOCS / page
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    saved = dict(RULES)
    try:
        exec(compile("\n".join(blocks), str(doc), "exec"), {})
    finally:
        RULES.clear()
        RULES.update(saved)
