"""The parts a training run is built from: its device, model and resumable sampler, and the checks made before
any batch (outputs vs classes; which evaluation corruptions were seen in training)."""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from vqsa.data.mixed import MixedCorruptionDataset
from vqsa.utils import distributed as dist

from .config import TrainConfig
from .inputs import resolve_corruptions


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch part-way (after ``start`` of this rank's samples)."""

    def __init__(self, dataset: MixedCorruptionDataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def build_model(cfg: TrainConfig, num_classes: int, *, resuming: bool = False) -> nn.Module:
    """``vqsa.create_model`` with the config's model section (``num_classes: null`` -> the dataset's). A resumed run
    does not load pretrained weights: the checkpoint's replace them (and the file or network may be gone)."""
    from vqsa.models import create_model

    m = cfg.model
    return create_model(
        m.name, num_classes=m.num_classes or num_classes, pretrained=False if resuming else m.pretrained,
        codebook_size=m.codebook_size,
        fusion=m.fusion, attention=m.attention, vq=m.vq, distance=m.distance, commitment_weight=m.commitment_weight,
        **m.kwargs,
    )


def select_device(cfg: TrainConfig) -> torch.device:
    device = dist.init_distributed()
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device == "cuda" and device.type != "cuda":
        raise ValueError("device: cuda was asked for but CUDA is not available")
    return device


def split_eval_corruptions(cfg: TrainConfig, train_c: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Evaluation corruptions split into those also used in training (known) and the others (unknown)."""
    if not cfg.eval.enabled:
        return [], []
    eval_c = resolve_corruptions(cfg.eval.corruptions)
    return [c for c in eval_c if c in train_c], [c for c in eval_c if c not in train_c]


def check_outputs(outputs: int | None, classes: int) -> None:
    """Fewer outputs than classes fails on the first batch whose label is too large; more train logits that are
    never a target."""
    if outputs is None or outputs == classes:
        return
    if outputs < classes:
        raise ValueError(f"the model has {outputs} outputs but the dataset has {classes} classes; set "
                         f"model.num_classes to {classes} or null (the dataset's)")
    warnings.warn(f"the model has {outputs} outputs but the dataset has {classes} classes: outputs {classes}.."
                  f"{outputs - 1} are never a target", stacklevel=3)
