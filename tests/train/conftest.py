import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every training test runs with one torch thread (see tests/conftest.py)."""
