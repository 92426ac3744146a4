"""Shared test helpers.

CUDA tests are decorated with `requires_cuda` and skipped when no GPU is visible; on a machine
with a GPU they run against the CUDA kernels (an extension built without CUDA then fails them
with its "built without CUDA" error).
"""

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def two_threads():
    """Runs the test at 2 threads, the default thread count of the CLI on the 2-core machines:
    determinism and resume must hold there, not only at 1 thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
