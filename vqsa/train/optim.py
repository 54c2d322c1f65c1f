"""Optimiser and per-step learning-rate schedule (linear warm-up, then cosine, linear or constant)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig


def split_decay(model: nn.Module, *, named: bool = True) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed) trainable parameters. No weight decay on biases, norm weights, the codebook (decaying
    it would pull the codes to 0) and, with ``named``, what the model's ``no_weight_decay()`` names (e.g. a ViT
    backbone's position embeddings), as timm's optimizer factory; ``named=False`` is the rule of runs started
    before vqsa honoured ``no_weight_decay()``."""
    skip = model.no_weight_decay() if named and callable(getattr(model, "no_weight_decay", None)) else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or "codebook" in name or name in skip else decay).append(p)
    return decay, no_decay


def freeze_backbone(model: nn.Module) -> None:
    """Stop gradients to ``model.backbone`` (its norm layers are kept in eval mode by :func:`train_mode`)."""
    model.backbone.requires_grad_(False)


def train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    """``model.train()``, with a frozen backbone left in eval mode: a fixed feature extractor, running statistics
    included."""
    model.train()
    if frozen_backbone:
        model.backbone.eval()


def _param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_scale: float) -> list[dict]:
    """Two groups (decayed, not decayed); with ``backbone_lr_scale != 1`` each splits into the head's parameters and
    the backbone's, which train at ``lr * backbone_lr_scale``."""
    decay, no_decay = split_decay(model)
    if backbone_lr_scale == 1:
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    body = {id(p) for p in model.backbone.parameters()}
    groups = []
    for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
        groups.append({"params": [p for p in params if id(p) not in body], "weight_decay": wd, "lr": lr})
        groups.append({"params": [p for p in params if id(p) in body], "weight_decay": wd,
                       "lr": lr * backbone_lr_scale})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam (the paper: lr 1e-3), AdamW or SGD with momentum (the authors' code), optionally Nesterov's; the
    backbone's learning rate is ``cfg.lr * cfg.backbone_lr_scale`` (0: a frozen backbone, left out)."""
    groups = _param_groups(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_scale)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.name!r}; expected adam, adamw or sgd")


class WarmupSchedule:
    """lr factor at optimiser step ``t``: linear warm-up over ``warmup`` steps, then ``shape`` down to
    ``min_factor`` at ``total``: ``cosine`` annealing, a ``linear`` ramp, or ``constant`` (no decay)."""

    def __init__(self, total: int, warmup: int, min_factor: float, shape: str) -> None:
        if shape not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule shape must be cosine, linear or constant, got {shape!r}")
        self.total, self.warmup, self.min_factor, self.shape = total, warmup, min_factor, shape

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.shape == "constant":
            return 1.0
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        decay = 1 - t if self.shape == "linear" else 0.5 * (1 + math.cos(math.pi * t))
        return self.min_factor + (1 - self.min_factor) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR (stepped after every optimiser step, so mid-epoch resumes land on the same lr)."""
    factor = WarmupSchedule(
        total=steps_per_epoch * epochs,
        warmup=int(round(cfg.warmup_epochs * steps_per_epoch)),
        min_factor=cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0,
        shape=cfg.scheduler,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
