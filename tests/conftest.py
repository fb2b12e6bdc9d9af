"""Fixtures for every test: thread counts restored, and the models and data several test files share."""

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from zigprune.cli import main

FAST = ["--no-latency", "--no-onnx", "--no-progress"]
# layer timings of latency searches go to a folder of the test session, not the user's cache
os.environ.setdefault("ZIGPRUNE_CACHE_DIR", tempfile.mkdtemp(prefix="zigprune-test-cache-"))


@pytest.fixture(autouse=True)
def restore_threads():
    """Latency and compress runs set torch's thread count; give the next test the one it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


WORDS = [
    "the",
    "a",
    "of",
    "to",
    "in",
    "is",
    "and",
    "for",
    "with",
    "on",
    "model",
    "layer",
    "prune",
    "weight",
    "value",
    "group",
    "channel",
    "head",
]


@pytest.fixture(scope="session")
def dense_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dense") / "run"
    argv = ["compress", "--epochs", "5", "--save-dense", "--out", str(out)]  # dense: about 92% in 6 s
    assert main([*argv, "--target", "macs=2x", *FAST]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    # at the default initializer_range 0.02 the blocks barely change what the embeddings give
    bert(vocab_size=5 + len(WORDS), max_position_embeddings=64, initializer_range=0.3).save_pretrained(folder)
    return folder


def bert(seed: int = 0, kind: str = "BertModel", **config: Any) -> torch.nn.Module:
    """A small random BERT of ``transformers``' class ``kind`` (2 layers of 4 heads, width 32, 64 in the
    MLP unless ``config`` says otherwise): the tests' one recipe for a tiny encoder."""
    import transformers

    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    torch.manual_seed(seed)
    return getattr(transformers, kind)(transformers.BertConfig(**(sizes | config)))


@pytest.fixture(scope="session")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generator = torch.Generator().manual_seed(0)
    lines = [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (int(n),), generator=generator))
        for n in torch.randint(8, 30, (80,), generator=generator)
    ]
    path = tmp_path_factory.mktemp("text") / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
