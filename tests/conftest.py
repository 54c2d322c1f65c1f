import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real data (``$VQSA_DATA``); tests that need it skip cleanly where it is absent."""
    root = os.environ.get("VQSA_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("VQSA_DATA is not set or missing (CI sets VQSA_DATA=../shared/data)")
    return Path(root).resolve()  # absolute: tests symlink to it and change directories


@pytest.fixture(scope="session")
def cifar10_root(data_root: Path) -> Path:
    if not (data_root / "cifar10" / "test.npz").is_file():
        pytest.skip("CIFAR-10 npz not in VQSA_DATA")
    return data_root


@pytest.fixture(scope="session")
def imagenet_sample(data_root: Path) -> Path:
    path = data_root / "imagenet_sample"
    if not path.is_dir():
        pytest.skip("imagenet_sample not in VQSA_DATA")
    return path


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """vqsa's on-disk caches (the precision probe) go to a folder of this test session, child processes included,
    never to the user's home."""
    before = os.environ.get("VQSA_CACHE_DIR")
    os.environ["VQSA_CACHE_DIR"] = str(tmp_path_factory.mktemp("vqsa_cache"))
    yield
    if before is None:
        os.environ.pop("VQSA_CACHE_DIR", None)
    else:
        os.environ["VQSA_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """The environment for a child Python: this checkout first on its path, whatever vqsa is installed (if any)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: the test machines have 2 shared cores, and OpenMP oversubscription stalls them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
