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
