"""Shared test helpers.

CUDA tests use the `cuda` marker via `requires_cuda`: they are skipped only when no GPU is
visible (torch.cuda.is_available() is called, not referenced), and fail loudly if a GPU is
visible but the extension was built without CUDA.
"""

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
