"""Training on clean + corrupted images (Eq. 1 / Eq. 10 of the paper): config, loop, checkpoints, logs.

    from vqsa.train import load_config, train
    cfg = load_config("configs/cifar10_r18_concat_sa.yaml", ["--epochs", "3"])
    summary = train(cfg)                      # runs/<name>/: config.yaml, checkpoint_last.pt, metrics, weights
    train(cfg, resume=True)                   # continue a killed run from runs/<name>/checkpoint_last.pt
"""
import sys

from . import inputs
from .config import TrainConfig, load_config, to_yaml
from .engine import NonFiniteLossError, Trainer, train
from .setup import build_model

sys.modules[f"{__name__}.data"] = inputs  # the module's earlier name

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "build_model", "load_config", "to_yaml", "train"]
