"""The training loop: mixed clean + corrupted batches, Eq. (10) loss, DDP, AMP, atomic checkpoints and exact resume.

``train(cfg)`` runs the same way in one process and under ``torchrun --nproc_per_node=N`` (one process per device,
``DistributedDataParallel``, a ``DistributedSampler``); only rank 0 writes files. Everything random about the data
is a function of ``(seed, epoch, index)`` and the optimiser/scheduler/scaler/RNG states are checkpointed, so on the
CPU a run killed after any checkpoint and resumed ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from vqsa.data.mixed import ArraySource, MixedCorruptionDataset, collate_mixed
from vqsa.data.transforms import to_float
from vqsa.utils import distributed as dist
from vqsa.utils.io import atomic_write_json, atomic_write_text
from vqsa.utils.lock import check_not_locked, folder_lock
from vqsa.utils.meta import git_sha, machine, versions
from vqsa.utils.paths import same_folder

from .checkpointing import (
    CHECKPOINT_NAME,
    check_resume_compatible,
    load_module_runtime_state,
    load_resume_checkpoint,
    module_runtime_state,
    resume_path,
    save_checkpoint,
    set_rng_state,
)
from .compute import ComputePlan, cached_probe, plan_compute, probe_step_rates, resolve_corrupt_on
from .config import TrainConfig, flatten, show_value, to_yaml
from .data import TrainData, build_datasets, build_train_data, resolve_corruptions
from .logs import MetricsLogger, format_summary
from .monitor import check_usage, usage_summary
from .optim import build_optimizer, build_scheduler, freeze_backbone, split_decay, train_mode

logger = logging.getLogger(__name__)


def jensen_shannon(logits: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """AugMix's consistency loss: the mean KL divergence of each view's prediction from their mixture."""
    probs = [torch.softmax(v.float(), dim=1) for v in logits]
    log_mixture = torch.clamp(torch.stack(probs).mean(0), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)


def _quiet() -> bool:
    """True when a vqsa logger above this module's is set above INFO (``vqsa train --quiet``); unconfigured logging
    keeps the progress bars."""
    node: logging.Logger | None = logger
    while node is not None and node.name != "root":
        if node.level != logging.NOTSET:
            return node.level > logging.INFO
        node = node.parent
    return False

# Order of the per-epoch running sums (float64, reduced over ranks with one all_reduce).
_SUMS = ("loss", "ce", "aux", "correct", "count", "bad")
# Config keys that shape the learning-rate schedule (a resume with other values follows the new schedule).
_SCHEDULE_KEYS = ("epochs", "batch_size", "optim.lr", "optim.scheduler", "optim.warmup_epochs", "optim.min_lr")
# The corruption evaluation's files in the run folder (vqsa.eval's Results.save).
_RESULT_FILES = ("results.json", "results.csv", "results.md", "results.png")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped without overwriting the last good checkpoint."""


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


def _select_device(cfg: TrainConfig) -> torch.device:
    device = dist.init_distributed()
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device == "cuda" and device.type != "cuda":
        raise ValueError("device: cuda was asked for but CUDA is not available")
    return device


def _split_eval_corruptions(cfg: TrainConfig, train_c: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Evaluation corruptions split into those also used in training (known) and the others (unknown)."""
    if not cfg.eval.enabled:
        return [], []
    eval_c = resolve_corruptions(cfg.eval.corruptions)
    return [c for c in eval_c if c in train_c], [c for c in eval_c if c not in train_c]


def _check_outputs(outputs: int | None, classes: int) -> None:
    """Fewer outputs than classes fails on the first batch whose label is too large; more train logits that are
    never a target."""
    if outputs is None or outputs == classes:
        return
    if outputs < classes:
        raise ValueError(f"the model has {outputs} outputs but the dataset has {classes} classes; set "
                         f"model.num_classes to {classes} or null (the dataset's)")
    warnings.warn(f"the model has {outputs} outputs but the dataset has {classes} classes: outputs {classes}.."
                  f"{outputs - 1} are never a target", stacklevel=3)


class Trainer:
    """One training run (see the module docstring); ``fit()`` returns the final summary.

    Args:
        cfg: the resolved config.
        model: a model with the VQSA forward contract (``model(x, return_aux=True)`` -> ``.logits``, ``.aux_loss``)
            and a ``model_config`` dict; built from ``cfg.model`` when None.
        data: the sources; built from ``cfg.data`` when None.
        resume: a checkpoint or a run folder (its ``checkpoint_last.pt``), True for this run folder's, or None for
            a fresh run. A checkpoint from another folder continues in this run's folder (a fork), which must not
            hold a checkpoint of its own.
    """

    def __init__(
        self, cfg: TrainConfig, *, model: nn.Module | None = None, data: TrainData | None = None,
        resume: str | Path | bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = _select_device(cfg)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.run_dir = cfg.run_dir()
        if self.main:
            check_not_locked(self.run_dir)  # another process training into this folder: say so before any work
        ckpt_path = self.run_dir / CHECKPOINT_NAME if resume is True else (resume_path(resume) if resume else None)
        elsewhere = ckpt_path is not None and not same_folder(ckpt_path.parent, self.run_dir)
        if (ckpt_path is None or elsewhere) and (self.run_dir / CHECKPOINT_NAME).exists():
            raise ValueError(
                f"{self.run_dir} already holds a training checkpoint: pass --resume to continue it, or choose "
                "another --name (nothing was overwritten)"
            )
        if elsewhere and self.main:
            logger.info(f"resume: continuing {ckpt_path} in the run folder {self.run_dir}")
        ckpt = None
        if ckpt_path is not None:
            ckpt, ckpt_path = load_resume_checkpoint(ckpt_path)
        weights = cfg.model.pretrained
        if model is None and ckpt is None and isinstance(weights, str) and not Path(weights).is_file():
            raise FileNotFoundError(f"model.pretrained: no weights file at {weights!r}")  # before the data is read

        self.train_corruptions = resolve_corruptions(cfg.corruption.corruptions)
        self.known, self.unknown = _split_eval_corruptions(cfg, self.train_corruptions)
        self.data = data if data is not None else build_train_data(cfg)
        in_memory = isinstance(self.data.train, ArraySource)
        corrupt_on = resolve_corrupt_on(cfg.corruption.corrupt_on, in_memory)
        self.train_ds, self.val_ds = build_datasets(cfg, self.data, self.train_corruptions, corrupt_on)
        self._device_corrupt = self._device_corruption() if corrupt_on == "device" else None

        torch.manual_seed(cfg.seed)
        if model is None:
            model = build_model(cfg, len(self.data.classes), resuming=ckpt is not None)
        self.model = model
        self.model_config = getattr(self.model, "model_config", None)
        if not isinstance(self.model_config, dict):
            raise TypeError("the model needs a `model_config` dict (create_model sets it) to be checkpointed")
        _check_outputs(self.model_config.get("num_classes"), len(self.data.classes))
        self.cuda = self.device.type == "cuda"
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if hasattr(self.model, "check_inputs"):
            # the pipeline makes finite [0, 1] batches itself; skip the input check's device sync on every step
            self.model.check_inputs = False
        self.vq = getattr(self.model, "vq", None)
        self.plan = self._plan_compute(corrupt_on, in_memory, ckpt)

        self.sampler = ResumableSampler(self.train_ds, self.world, self.rank, cfg.seed)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / cfg.batch_size)
        self.frozen_backbone = cfg.optim.backbone_lr_scale == 0
        if cfg.optim.backbone_lr_scale != 1 and not isinstance(getattr(self.model, "backbone", None), nn.Module):
            raise ValueError(f"optim.backbone_lr_scale={cfg.optim.backbone_lr_scale} needs a model with a .backbone "
                             f"(vqsa models have one; {type(self.model).__name__} does not)")
        if self.frozen_backbone:
            freeze_backbone(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps_per_epoch, cfg.epochs)
        self.autocast = self.plan.autocast
        fp16 = self.plan.precision == "float16" and self.cuda
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)  # bf16 needs no loss scaling

        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.sums = torch.zeros(len(_SUMS), dtype=torch.float64, device=self.device)
        history: list[dict[str, Any]] = []
        self.finished: dict[str, Any] | None = None  # the summary of a resumed run that has nothing left to do
        if ckpt is not None:
            history = self._restore(ckpt, ckpt_path)
            self.finished = self._finished_summary()
        if self.main and self.finished is None:
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        torch.manual_seed(cfg.seed + self.rank)
        if ckpt is not None and self.main:
            set_rng_state(ckpt["rng"])
        self.ddp_model = self.model
        if self.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.cuda else None
            )
        self.logger = MetricsLogger(self.run_dir, history, enabled=self.main, tensorboard=cfg.tensorboard)

    # ------------------------------------------------------------------------------------------------ setup
    def _plan_compute(self, corrupt_on: str, in_memory: bool, ckpt: dict[str, Any] | None) -> ComputePlan:
        """Threads, workers and precision for this process (see ``vqsa.train.compute``); a resumed run keeps the
        precision recorded in its checkpoint."""
        cfg = self.cfg
        size = self.data.img_size
        n = max(1, min(cfg.batch_size, max(8, int(128 * (32 / size) ** 2))))  # 128 images at 32 px, 8 at 224 px
        batch = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        batch = batch.to(self.device)
        if cfg.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)

        def step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            out = model(x, return_aux=True)
            return out.logits.float().logsumexp(1).mean() + out.aux_loss.float()

        key = (repr(sorted(self.model_config.items())), tuple(batch.shape), self.device.type, cfg.channels_last)
        plan = plan_compute(
            device=self.device, threads=cfg.threads, workers=cfg.data.workers, amp=cfg.amp, amp_dtype=cfg.amp_dtype,
            channels_last=cfg.channels_last, corrupt_on=corrupt_on, in_memory=in_memory, world=self.world,
            probe=cached_probe(key, lambda dtypes: probe_step_rates(self.model, step, batch, dtypes)),
            saved=(ckpt or {}).get("compute"),
        )
        if plan.precision == "float16" and not self.cuda:
            raise ValueError("amp_dtype: float16 is for CUDA; on the CPU use bfloat16")
        if self.world > 1:  # every rank trains in rank 0's precision, whatever its own probe measured
            precision, probe = dist.broadcast_object((plan.precision, plan.probe))
            plan = dataclasses.replace(plan, precision=precision, probe=probe)
        return plan

    def _device_corruption(self):
        try:
            from vqsa.corruptions.batched import corrupt_batch
        except ImportError as e:
            raise RuntimeError(
                "corrupt_on: device needs the batched torch corruption engine (vqsa.corruptions.batched), which is "
                "not available in this installation; use corrupt_on: cpu"
            ) from e
        return corrupt_batch

    def _restore(self, ckpt: dict[str, Any], path: Path) -> list[dict[str, Any]]:
        check_resume_compatible(ckpt, self.model_config, path)
        saved_cfg = ckpt.get("config") or {}
        saved_optimizer = (saved_cfg.get("optim") or {}).get("name", self.cfg.optim.name)
        if saved_optimizer != self.cfg.optim.name:
            raise ValueError(
                f"{path}: the checkpoint's optimizer is {saved_optimizer}, the config asks for {self.cfg.optim.name}: "
                f"its state cannot continue in another optimizer (keep optim.name: {saved_optimizer})"
            )
        saved_scale = (saved_cfg.get("optim") or {}).get("backbone_lr_scale", 1.0)
        scale = self.cfg.optim.backbone_lr_scale
        if (saved_scale == 1) != (scale == 1) or (saved_scale == 0) != (scale == 0):
            raise ValueError(
                f"{path}: optim.backbone_lr_scale {saved_scale:g} -> {scale:g} changes which parameters the optimizer "
                f"holds (1: one learning rate, 0: a frozen backbone, else two); keep {saved_scale:g} to resume"
            )
        # the hyper-parameters the config sets; the optimizer's state dict would bring back the checkpoint's
        configured = [{k: g[k] for k in ("initial_lr", "weight_decay", "momentum") if k in g}
                      for g in self.optimizer.param_groups]
        self._match_saved_groups(ckpt["optimizer"])
        try:
            self.model.load_state_dict(ckpt["model"])
            load_module_runtime_state(self.model, ckpt.get("runtime", {}))
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: checkpoint does not fit this model/optimizer: {e}") from e
        for group, values in zip(self.optimizer.param_groups, configured):
            group.update(values)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.batch_in_epoch = int(ckpt.get("batch", 0))
        if self.epoch > self.cfg.epochs or (self.epoch == self.cfg.epochs and self.batch_in_epoch):
            at = f"epoch {self.epoch}" + (f", batch {self.batch_in_epoch}" if self.batch_in_epoch else "")
            needed = self.epoch + (1 if self.batch_in_epoch else 0)
            raise ValueError(f"{path}: the checkpoint is at {at}, past epochs: {self.cfg.epochs}; a run cannot be "
                             f"shortened (pass --epochs {needed} or more)")
        saved_batch = saved_cfg.get("batch_size", self.cfg.batch_size)
        if self.batch_in_epoch and saved_batch != self.cfg.batch_size:
            raise ValueError(f"{path}: the checkpoint is in the middle of epoch {self.epoch + 1} (batch "
                             f"{self.batch_in_epoch} of {saved_batch} images); with batch_size {self.cfg.batch_size} "
                             f"the rest of the epoch would skip or repeat images (keep --batch_size {saved_batch}, "
                             "or change it when resuming from an end-of-epoch checkpoint)")
        self._restore_schedule(ckpt["scheduler"])
        if "sums" in ckpt:
            self.sums.copy_(ckpt["sums"].to(self.device))
        if self.main:
            where = f"epoch {self.epoch}" + (f", batch {self.batch_in_epoch}" if self.batch_in_epoch else "")
            logger.info(f"resumed {path} at {where} (step {self.step})")
            self._report_changes(saved_cfg)
        return list(ckpt.get("history", []))

    def _restore_schedule(self, state: dict[str, Any]) -> None:
        """Continue the lr schedule at the checkpoint's step, on the curve of the *current* config.

        ``LambdaLR.load_state_dict`` would also restore the saved ``WarmupSchedule`` (its total steps, warm-up, min lr)
        and base lrs: extending a finished run (``--epochs`` larger) would then train at the old curve's end, lr 0.
        The step counters come from the checkpoint, the factor and base lr from the config; with an unchanged config
        the lr is the same float as in the uninterrupted run (the same ``base_lr * factor(step)`` expression).
        """
        sched = self.scheduler
        state = dict(state)
        state["lr_lambdas"] = [None] * len(sched.lr_lambdas)  # keep the factor built from the current config
        state["base_lrs"] = [g["initial_lr"] for g in self.optimizer.param_groups]
        sched.load_state_dict(state)
        lrs = [base * factor(sched.last_epoch) for base, factor in zip(sched.base_lrs, sched.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = list(lrs)

    def _match_saved_groups(self, saved: dict[str, Any]) -> None:
        """A run started before ``no_weight_decay()`` was honoured keeps its two groups' membership (the fresh
        optimizer holds no state yet, so its groups can be refilled)."""
        sizes = [len(g["params"]) for g in saved.get("param_groups", [])]
        if sizes == [len(g["params"]) for g in self.optimizer.param_groups]:
            return
        legacy = split_decay(self.model, named=False)
        if sizes == [len(p) for p in legacy]:
            for group, params in zip(self.optimizer.param_groups, legacy):
                group["params"] = params
            if self.main:
                logger.info("resume: keeping the checkpoint's weight-decay groups (it decays what no_weight_decay() "
                            "names, as vqsa did when the run started)")

    def _report_changes(self, saved_cfg: dict[str, Any]) -> None:
        """One line naming the settings that differ from the checkpoint's, one more when they reshape the schedule.
        Where the run folder is (``output_dir``, ``name``) is not a setting: a moved run keeps its checkpoint's."""
        old, new = flatten(saved_cfg), flatten(self.cfg.to_dict())
        changed = [k for k in new if k in old and old[k] != new[k] and k not in ("output_dir", "name")]
        if not changed:
            return
        logger.info("resume: settings differ from the checkpoint's: "
                    + ", ".join(f"{k} {show_value(old[k])} -> {show_value(new[k])}" for k in changed))
        if any(k in _SCHEDULE_KEYS for k in changed):
            o, total = self.cfg.optim, self.scheduler.lr_lambdas[0].total
            shape = "constant" if o.scheduler == "constant" else f"{o.scheduler} to {o.min_lr:g}"
            warmup = f", warm-up {o.warmup_epochs:g} epochs" if o.warmup_epochs else ""
            logger.info(f"resume: the learning-rate schedule follows the current config ({shape} over "
                        f"{self.cfg.epochs} epochs = {total} steps{warmup}): lr "
                        f"{self.optimizer.param_groups[0]['lr']:.4g} at step {self.step}")

    def _finished_summary(self) -> dict[str, Any] | None:
        """The summary of a resumed run that already did all its epochs and wrote its final files (else None)."""
        if self.epoch < self.cfg.epochs or self.batch_in_epoch:
            return None
        summary = None
        if self.main:
            try:
                summary = json.loads((self.run_dir / "summary.json").read_text())
            except (OSError, ValueError):
                summary = None
            complete = (isinstance(summary, dict) and summary.get("steps") == self.step
                        and summary.get("epochs") == self.cfg.epochs and (self.run_dir / "model.safetensors").is_file())
            summary = summary if complete else None  # else it stopped before its final files: write them now
        return dist.broadcast_object(summary)

    def _save(self) -> None:
        if not self.main:
            return
        save_checkpoint(
            self.run_dir / CHECKPOINT_NAME, model=self.model.state_dict(), runtime=module_runtime_state(self.model),
            model_config=self.model_config,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), epoch=self.epoch, batch=self.batch_in_epoch, step=self.step,
            sums=self.sums.cpu(), history=self.logger.history, config=self.cfg.to_dict(), compute=self.plan.to_dict(),
        )

    # ------------------------------------------------------------------------------------------------ steps
    def _reduced(self) -> dict[str, float]:
        red = dist.all_reduce_sum(self.sums.clone()).tolist()
        out = dict(zip(_SUMS, red))
        if not all(math.isfinite(out[k]) for k in ("loss", "ce", "aux")):
            last = self.run_dir / CHECKPOINT_NAME
            kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been written"
            raise NonFiniteLossError(
                f"loss became NaN/Inf in epoch {self.epoch + 1} (by step {self.step}); the run stopped and {kept}. "
                "Lower optim.lr, add optim.clip_grad or optim.warmup_epochs, or check the data."
            )
        return out

    def _batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["label"].to(self.device, non_blocking=True)
        if self._device_corrupt is not None:
            x = self._device_corrupt_batch(x, batch)
        if self.cfg.corruption.pairs:
            x = torch.cat([batch["clean"].to(self.device, non_blocking=True), x])
            y = torch.cat([y, y])
        if "augmented" in batch:  # (B, k, C, H, W) -> the k views after the B images, view by view
            views = batch["augmented"].to(self.device, non_blocking=True)
            x = torch.cat([x, views.transpose(0, 1).flatten(0, 1)])
        x = to_float(x)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _device_corrupt_batch(self, x: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Apply the draw carried by the batch (corruption index, severity) with the batched engine on the device."""
        names = [None if c < 0 else self.train_corruptions[c] for c in batch["corruption"].tolist()]
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1_000_003 + self.step)
        return self._device_corrupt(x, names, batch["severity"].tolist(), generator=gen,
                                    profile=self.cfg.corruption.profile)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step; ``x`` may hold extra views after the ``len(y)`` labelled images (AugMix's), which
        enter through the Jensen-Shannon consistency term."""
        with self.autocast():
            out = self.ddp_model(x, return_aux=True)
            logits = out.logits.float()
            ce = F.cross_entropy(logits[: len(y)], y, label_smoothing=self.cfg.optim.label_smoothing)
            aux = out.aux_loss.float()
            loss = self.cfg.optim.ce_weight * ce + aux
            if len(logits) > len(y):
                loss = loss + self.cfg.corruption.jsd_weight * jensen_shannon(logits.chunk(len(logits) // len(y)))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        n = float(len(y))
        with torch.no_grad():
            correct = (out.logits[: len(y)].argmax(1) == y).sum().double()
            terms = [loss.detach().double() * n, ce.detach().double() * n, aux.detach().double() * n, correct]
            self.sums += torch.stack([*terms, self.sums.new_tensor(n), self.sums.new_zeros(())])

    def _sync_buffers(self) -> None:
        """Broadcast rank 0's persistent buffers (BatchNorm statistics): DDP syncs them before each forward, so
        after the last step every rank holds its own; this makes the epoch's model identical on all ranks."""
        if self.world == 1:
            return
        for module in self.model.modules():
            for name, buf in module._buffers.items():
                if buf is not None and name not in module._non_persistent_buffers_set:
                    dist.broadcast(buf, src=0)

    def _usage(self) -> dict[str, float]:
        if self.vq is None:
            return {}
        u = self.vq.usage()
        return {"codebook_perplexity": float(u.perplexity), "codebook_used": float(u.fraction_used),
                "codebook_dead_codes": self.vq.codebook_size - u.codes_used,
                "codebook_restarts": int(self.vq.restarted_codes)}

    def _loader(self, dataset, sampler, generator_seed: int) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=self.plan.workers,
            collate_fn=collate_mixed, pin_memory=self.cuda, drop_last=False,
            generator=torch.Generator().manual_seed(generator_seed),  # keeps the global RNG untouched
        )

    def train_one_epoch(self) -> dict[str, float]:
        """Train for the rest of the current epoch; return its reduced training metrics."""
        cfg, epoch = self.cfg, self.epoch
        self.train_ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start=self.batch_in_epoch * cfg.batch_size)
        if self.batch_in_epoch == 0:
            self.sums.zero_()
            if self.vq is not None:
                self.vq.reset_usage()
        train_mode(self.model, self.frozen_backbone)
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, disable=not self.main or _quiet(),
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True, leave=False, file=sys.stderr)
        t0, images = time.perf_counter(), 0
        try:
            for batch in self._loader(self.train_ds, self.sampler, cfg.seed + epoch):
                self.batch_in_epoch += 1
                self.sums[_SUMS.index("bad")] += batch["bad"]
                if "image" in batch:
                    x, y = self._batch_inputs(batch)
                    self._train_step(x, y)
                    images += len(y)
                bar.update(1)
                last = self.batch_in_epoch == self.steps_per_epoch
                if self.step % cfg.log_every == 0 or last:
                    s = self._reduced()  # also the NaN/Inf guard, on every rank
                    usage = self._usage()
                    n = max(s["count"], 1.0)
                    post = {"loss": s["loss"] / n, "ce": s["ce"] / n, "vq": s["aux"] / n, "acc": s["correct"] / n,
                            "img/s": images * self.world / max(time.perf_counter() - t0, 1e-9)}
                    if usage:
                        post.update(ppl=usage["codebook_perplexity"], used=usage["codebook_used"])
                    bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})
                if cfg.save_every and self.step % cfg.save_every == 0 and not last:
                    self._reduced()
                    self._save()
        except BaseException:
            # keep the bar's last state on its own line: the error (or NaN stop) printed next starts a new line
            bar.leave = True
            raise
        finally:
            bar.close()
        self._sync_buffers()
        elapsed = time.perf_counter() - t0
        s = self._reduced()
        count = max(s["count"], 1.0)
        metrics = {"train_loss": s["loss"] / count, "train_ce": s["ce"] / count, "train_aux": s["aux"] / count,
                   "train_acc": s["correct"] / count, "train_images": int(s["count"]), "bad_images": int(s["bad"])}
        metrics.update(self._usage())
        metrics["images_per_s"] = images * self.world / max(elapsed, 1e-9)
        metrics["epoch_time_s"] = elapsed
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Clean top-1 accuracy and loss on the validation set, counted exactly over ranks (no padding)."""
        shard = torch.utils.data.Subset(self.val_ds, range(self.rank, len(self.val_ds), self.world))
        was_training = self.model.training
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for batch in self._loader(shard, None, self.cfg.seed):
            if "image" not in batch:
                continue
            x, y = to_float(batch["image"].to(self.device)), batch["label"].to(self.device)
            with self.autocast():
                logits = self.model(x)
            sums += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                                 (logits.argmax(1) == y).sum().double(), sums.new_tensor(float(len(y)))])
        if was_training:
            train_mode(self.model, self.frozen_backbone)
        loss, correct, count = dist.all_reduce_sum(sums).tolist()
        return {"val_loss": loss / max(count, 1), "val_acc": correct / max(count, 1)}

    # ------------------------------------------------------------------------------------------------ run
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, write the final weights and evaluation; return the summary. Rank 0 holds the
        run folder's lock meanwhile (a second process training into it fails with the first one's PID)."""
        with folder_lock(self.run_dir) if self.main else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        t_start = time.perf_counter()
        if self.finished is not None:
            if self.main:
                n = f"{cfg.epochs} epoch" + ("s" if cfg.epochs != 1 else "")
                logger.info(f"{self.run_dir} already finished its {n} (step {self.step}) and wrote its final files: "
                            f"nothing to do. Pass --epochs N (more than {cfg.epochs}) to train longer; `vqsa evaluate "
                            f"--checkpoint {self.run_dir} ...` evaluates it again.")
            self.logger.close()
            return self.finished
        self._announce()
        if self.step == 0 and self.vq is not None and self.vq.needs_data_init and self.vq.init_samples:
            self._init_codebook()
        while self.epoch < cfg.epochs:
            record: dict[str, Any] = {"epoch": self.epoch + 1}
            record.update(self.train_one_epoch())
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            record["step"] = self.step
            if cfg.eval.val_every and ((self.epoch + 1) % cfg.eval.val_every == 0 or self.epoch + 1 == cfg.epochs):
                record.update(self.validate())
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.logger.log(record)
            if self.vq is not None and self.main:
                check_usage(self.logger.history, self.vq.codebook_size)
            self._save()
            if self.main:
                shown = {k: record[k] for k in ("train_loss", "train_acc", "val_acc", "codebook_used", "images_per_s")
                         if k in record}
                logger.info(f"epoch {record['epoch']}/{cfg.epochs} "
                            + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
        self.logger.close()
        summary = self._finish(time.perf_counter() - t_start)
        dist.barrier()
        return summary

    def _init_codebook(self) -> None:
        """Data-driven codebook init from epoch 0's training batches (``init_samples`` features, all ranks)."""
        from vqsa.models.presets import init_codebook_from_data

        self.train_ds.set_epoch(0)
        self.sampler.set_epoch(0)
        loader = self._loader(self.train_ds, self.sampler, self.cfg.seed)
        n = init_codebook_from_data(self.model, (self._batch_inputs(b)[0] for b in loader if "image" in b))
        if self.main:
            logger.info(f"codebook initialised ({self.vq.init}) from {n} training features")

    def _announce(self) -> None:
        if not self.main:
            return
        cfg = self.cfg
        per_step = cfg.batch_size * (2 if cfg.corruption.pairs else 1)
        logger.info(f"run folder {self.run_dir}; data {self.data.description}")
        logger.info(self.plan.describe())
        logger.info(f"effective batch size {cfg.batch_size} x {self.world} process(es) = {cfg.batch_size * self.world}"
                    + (f" images ({per_step * self.world} with clean/corrupted pairs)" if cfg.corruption.pairs else ""))
        if self.known:
            warnings.warn(
                f"training corruptions {self.known} are also evaluation corruptions: their errors measure robustness "
                f"to corruptions seen in training; only {self.unknown or 'none'} are unseen", UserWarning, stacklevel=3,
            )

    def _finish(self, wall: float) -> dict[str, Any]:
        final = self.logger.history[-1] if self.logger.history else {}
        summary: dict[str, Any] = {
            "name": self.cfg.name, "epochs": self.cfg.epochs, "steps": self.step, "world_size": self.world,
            "effective_batch_size": self.cfg.batch_size * self.world, "wall_time_s": wall,
            "train_corruptions": list(self.train_corruptions), "eval_corruptions_known": self.known,
            "eval_corruptions_unknown": self.unknown, "compute": self.plan.to_dict(),
        }
        summary.update({k: final[k] for k in ("train_loss", "train_acc", "val_acc", "codebook_perplexity",
                                               "codebook_used") if k in final})
        if self.vq is not None:
            summary["codebook"] = usage_summary(self.logger.history, self.vq.codebook_size)
        if self.main:
            if not (self.cfg.eval.enabled and self.data.val_arrays is not None):
                self._mark_stale_results()
            self._save_final_weights()
        evaluation = self._evaluate()
        if evaluation is not None:
            summary["evaluation"] = evaluation
        if self.main:
            info = dict(summary, config=self.cfg.to_dict(), model_config=self.model_config, versions=versions(),
                        git_sha=git_sha(), machine=machine())
            atomic_write_json(self.run_dir / "summary.json", info)
            scalars = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
            logger.info("summary:\n" + format_summary(scalars))
            if evaluation is not None:
                logger.info(_evaluation_line(evaluation, self.run_dir))
        return summary

    def _mark_stale_results(self) -> None:
        """Rename the results.* of earlier weights (a resumed run extended with the evaluation off) to
        results.stale.*, so that no results file sits beside weights it does not describe."""
        old = [name for name in _RESULT_FILES if (self.run_dir / name).is_file()]
        for name in old:
            os.replace(self.run_dir / name, self.run_dir / name.replace("results.", "results.stale.", 1))
        if old:
            why = "eval.enabled is false" if not self.cfg.eval.enabled else "the validation set is an image folder"
            logger.warning(f"renamed {', '.join(old)} (the evaluation of the earlier weights) to results.stale.*: "
                           f"this run writes no new evaluation ({why}); `vqsa evaluate --checkpoint {self.run_dir} "
                           "...` evaluates the new weights")

    def _save_final_weights(self) -> None:
        from vqsa.models import save_model

        save_model(self.model, self.run_dir / "model.safetensors")

    def _evaluate(self) -> dict[str, Any] | None:
        """``vqsa.evaluate`` on the validation arrays (clean + eval corruptions); results.json in the run folder."""
        if not self.cfg.eval.enabled:
            return None
        if self.data.val_arrays is None:
            if self.main:
                logger.warning("corruption evaluation skipped: the validation set is an image folder; evaluate the run "
                               f"with `vqsa evaluate --checkpoint {self.run_dir} --dataset imagenet-c`")
            return None
        from vqsa.eval import evaluate

        e = self.cfg.eval
        # on the whole split with the subset's indices: results.json then records split indices, and
        # `vqsa evaluate --indices-from RUN/results.json` repeats this evaluation
        data, indices = self.data.val_split or (self.data.val_arrays, None)
        results = evaluate(
            self.model, data, corruptions=self.known + self.unknown, severities=tuple(e.severities),
            batch_size=e.batch_size, num_workers=self.plan.workers, amp=self.plan.precision != "float32",
            limit=e.n_examples, indices=indices, seed=self.cfg.seed, profile=e.profile, device=self.device,
            train_corruptions=list(self.train_corruptions), progress=self.main,
            model_info={**self.model_config, "label": self.cfg.name},
        )
        if self.main:
            results.save(self.run_dir)
        return results.summary()


def _evaluation_line(ev: dict[str, Any], run_dir: Path) -> str:
    """The end-of-training evaluation in one line: accuracies and mCE where defined, and where the tables are."""
    parts = [f"{name} {ev[key]:.2f} %" for name, key in (
        ("clean acc", "clean_accuracy"), ("known acc", "known_accuracy"), ("unknown acc", "unknown_accuracy"),
        ("mCE", "mce")) if ev.get(key) is not None]
    return f"evaluation: {', '.join(parts)} (tables: {run_dir / 'results.md'})"


def train(
    cfg: TrainConfig, *, model: nn.Module | None = None, data: TrainData | None = None,
    resume: str | Path | bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training run described by ``cfg``; see :class:`Trainer`."""
    return Trainer(cfg, model=model, data=data, resume=resume).fit()
