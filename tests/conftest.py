"""Fixtures for every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_threads():
    """Latency and compress runs set torch's thread count; give the next test the one it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
