"""Damaged CIFAR-10-C files: one line naming the file and the problem, no traceback from numpy or the DataLoader."""
from __future__ import annotations

import numpy as np
import pytest

from vqsa.data.corrupted import cifar10_c


def _write(root, images: np.ndarray, labels: np.ndarray) -> None:
    np.save(root / "contrast.npy", images)
    np.save(root / "labels.npy", labels)


def test_a_truncated_file_is_named(tmp_path):
    _write(tmp_path, np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, np.int64))
    data = (tmp_path / "contrast.npy").read_bytes()
    (tmp_path / "contrast.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"contrast.npy: not a readable .npy array \(.*truncated"):
        cifar10_c(tmp_path, "contrast", 1)


def test_an_empty_file_is_named(tmp_path):
    _write(tmp_path, np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, np.int64))
    (tmp_path / "labels.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"labels.npy: not a readable .npy array \(it is empty\)"):
        cifar10_c(tmp_path, "contrast", 1)


def test_images_of_another_size_are_named(tmp_path):
    _write(tmp_path, np.zeros((10, 16, 16, 3), np.uint8), np.zeros(10, np.int64))
    with pytest.raises(ValueError, match=r"contrast.npy: holds 16x16 images; CIFAR-10-C images are 32x32"):
        cifar10_c(tmp_path, "contrast", 1)


def test_labels_of_another_length_are_named(tmp_path):
    _write(tmp_path, np.zeros((10, 32, 32, 3), np.uint8), np.zeros(9, np.int64))
    with pytest.raises(ValueError, match=r"labels.npy: expected 10 labels"):
        cifar10_c(tmp_path, "contrast", 1)
