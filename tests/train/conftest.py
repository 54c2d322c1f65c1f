import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Training tests run on shared 2-core machines: one intra-op thread avoids OpenMP oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
