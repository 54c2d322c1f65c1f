"""Training on clean + corrupted images (Eq. 1 / Eq. 10 of the paper): config, loop, checkpoints, logs.

    from vqsa.train import load_config, train
    cfg = load_config("configs/cifar10_r18_concat_sa.yaml", ["--epochs", "3"])
    summary = train(cfg)                      # runs/<name>/: config.yaml, checkpoint_last.pt, metrics, weights
    train(cfg, resume=True)                   # continue a killed run from runs/<name>/checkpoint_last.pt
"""
from .config import TrainConfig, load_config, to_yaml
from .engine import NonFiniteLossError, Trainer, build_model, train

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "build_model", "load_config", "to_yaml", "train"]
