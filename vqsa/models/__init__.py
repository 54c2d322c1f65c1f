"""VQSA models: the factory, the registry, the classifier and checkpoint helpers."""
import sys

from . import cifar_airnet, cifar_resnet, classifier  # noqa: F401  (register the built-in CIFAR backbones)
from ._factory import create_model
from ._registry import is_model, list_models, register_backbone
from .checkpoint import load_checkpoint, load_model, save_model
from .classifier import VQSAClassifier, VQSAOutput
from .official import convert_official
from .presets import CODEBOOK_PRESETS, init_codebook_from_data

sys.modules[f"{__name__}.vqsa"] = classifier  # the module's earlier name

__all__ = [
    "CODEBOOK_PRESETS",
    "VQSAClassifier",
    "VQSAOutput",
    "convert_official",
    "create_model",
    "init_codebook_from_data",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "register_backbone",
    "save_model",
]
