import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_vqsa():
    """A random-weight VQSA classifier on the small CIFAR backbone (k-means-free init so codes vary)."""
    import vqsa

    torch.manual_seed(0)
    return vqsa.create_model("cifar_resnet8", 10, codebook_size=16, init="normal")


@pytest.fixture(scope="session")
def tiny_images():
    """Four classes x six 32-px images: class c is a bright square at a class-specific place on noise."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 90, (24, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 6)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        images[i, 16 * r:16 * r + 16, 16 * q:16 * q + 16] = 220
    return images, labels
