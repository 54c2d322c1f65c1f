"""Write corrupted datasets to disk: ImageNet-C style folder trees and CIFAR-10-C style ``.npy`` files.

Both writers are deterministic per (item, corruption, severity) whatever the number of worker processes: the
random generator of every output is derived from ``(seed, item key, corruption, severity)`` with a stable hash,
never from the order in which work is done. Both are resumable: outputs that already exist are skipped, and every
file is written atomically, so an interrupted run leaves only complete files (plus, at worst, stale temporary
files that the next run removes). A ``vqsa_corrupt.json`` manifest in the destination records the settings; a run
with different settings into the same destination is refused instead of mixing two datasets.

One job per module: ``validate`` (arguments), ``images`` (decode, preprocess, encode, list), ``manifest``,
``pool`` (worker processes), ``folder`` and ``arrays`` (the two writers), ``summary``.
"""
from vqsa.corruptions._api import check_severities
from vqsa.utils.io import BadImageError

from .arrays import corrupt_arrays
from .folder import corrupt_folder
from .images import IMAGE_EXTENSIONS, encode_image, imagenet_c_preprocess, list_images, load_rgb, output_relpath
from .manifest import MANIFEST_NAME, read_manifest
from .summary import WriteSummary
from .validate import PROFILES, SEVERITIES, check_profile, check_seed, requested_corruptions

__all__ = [
    "IMAGE_EXTENSIONS", "MANIFEST_NAME", "PROFILES", "SEVERITIES", "BadImageError", "WriteSummary", "check_profile",
    "check_seed", "check_severities", "corrupt_arrays", "corrupt_folder", "encode_image", "imagenet_c_preprocess",
    "list_images", "load_rgb", "output_relpath", "read_manifest", "requested_corruptions",
]
