"""Datasets: CIFAR-10 arrays, image folders, ImageNet-C / CIFAR-10-C, mixed clean + corrupted training sets."""
from .cifar import CIFAR10_CLASSES, ArrayDataset, load_cifar10
from .paths import resolve_data_root

__all__ = ["CIFAR10_CLASSES", "ArrayDataset", "load_cifar10", "resolve_data_root"]
