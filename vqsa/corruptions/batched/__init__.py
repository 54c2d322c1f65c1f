"""Batched torch corruption engine: the 19 ImageNet-C corruptions on (B, 3, H, W) tensors on any device.

``corrupt_batch`` corrupts a batch with one corruption per image (grouped internally); ``RandomCorruption`` is the
training-loop module drawing the stratified/uniform (corruption, severity) schedule on the device. Parameters and
frost textures come from the CPU engine (:mod:`vqsa.corruptions`), which these ops match (docs/batched_corruptions.md).
"""
from ._api import corrupt_batch
from .random import RandomCorruption

__all__ = ["RandomCorruption", "corrupt_batch"]
