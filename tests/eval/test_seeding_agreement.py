"""On-the-fly evaluation sets and `vqsa corrupt` files hold the same pixels for the same seed."""
import numpy as np

from vqsa.corruptions.dataset_writer import corrupt_arrays
from vqsa.data.corrupted import ArrayImages, CorruptedImages


def test_on_the_fly_equals_written_cifar_c(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 3
    corrupt_arrays(tmp_path, images, labels, ["gaussian_noise", "glass_blur"], (1, 4), seed=5, progress=False)
    base = ArrayImages(images, labels, 3, "toy")
    for name in ("gaussian_noise", "glass_blur"):
        written = np.load(tmp_path / f"{name}.npy")
        for k, severity in enumerate((1, 4)):
            on_the_fly = np.stack([CorruptedImages(base, name, severity, seed=5, profile="cifar").load(i)[0]
                                   for i in range(6)])
            np.testing.assert_array_equal(on_the_fly, written[k * 6:(k + 1) * 6])
