"""Resuming a run: which checkpoint to open, a plan checked against the current config before any state is touched,
and then its application to the model, optimiser, schedule and scaler.

The optimiser's hyper-parameters and the learning-rate curve come from the current config, the counters and states
from the checkpoint: with an unchanged config a resumed run is bit-identical to an uninterrupted one, and a changed
schedule (``--epochs`` larger) continues on the new curve.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqsa.utils import distributed as dist
from vqsa.utils.paths import same_folder

from .checkpointing import (
    CHECKPOINT_NAME,
    check_resume_compatible,
    load_module_runtime_state,
    load_resume_checkpoint,
    resume_path,
)
from .config import TrainConfig, flatten, show_value
from .optim import split_decay

logger = logging.getLogger(__name__)

#: Config keys that reshape the learning-rate curve (a resume then says where on the new curve it continues).
SCHEDULE_KEYS = ("epochs", "batch_size", "optim.lr", "optim.scheduler", "optim.warmup_epochs", "optim.min_lr")


def open_checkpoint(run_dir: Path, resume: str | Path | bool | None, main: bool
                    ) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint to resume from (``True``: this run folder's; a path: a checkpoint or run folder, which may be
    another folder's: a fork) and its path, or ``(None, None)`` for a fresh run. A fresh run or a fork into a folder
    that holds a checkpoint of its own is refused: nothing is overwritten."""
    path = run_dir / CHECKPOINT_NAME if resume is True else (resume_path(resume) if resume else None)
    elsewhere = path is not None and not same_folder(path.parent, run_dir)
    if (path is None or elsewhere) and (run_dir / CHECKPOINT_NAME).exists():
        raise ValueError(f"{run_dir} already holds a training checkpoint: pass --resume to continue it, or choose "
                         "another --name (nothing was overwritten)")
    if path is None:
        return None, None
    if elsewhere and main:
        logger.info(f"resume: continuing {path} in the run folder {run_dir}")
    return load_resume_checkpoint(path)


@dataclass(frozen=True)
class ResumePlan:
    """Where a checkpoint continues (``epoch`` done, ``batch`` of the next epoch, optimiser ``step``), with its
    config, checked against the current one."""

    path: Path
    epoch: int
    batch: int
    step: int
    saved_config: dict[str, Any]

    @property
    def where(self) -> str:
        return f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch else "")


def plan_resume(ckpt: dict[str, Any], path: Path, cfg: TrainConfig, model_config: dict[str, Any]) -> ResumePlan:
    """Check that ``ckpt`` can continue under ``cfg`` (same architecture and optimiser, the same parameter groups,
    not past the configured epochs, the batch size kept inside an epoch); ValueError naming ``path`` otherwise."""
    check_resume_compatible(ckpt, model_config, path)
    saved = ckpt.get("config") or {}
    saved_optim = saved.get("optim") or {}
    if saved_optim.get("name", cfg.optim.name) != cfg.optim.name:
        raise ValueError(f"{path}: the checkpoint's optimizer is {saved_optim['name']}, the config asks for "
                         f"{cfg.optim.name}: its state cannot continue in another optimizer (keep optim.name: "
                         f"{saved_optim['name']})")
    old, new = saved_optim.get("backbone_lr_scale", 1.0), cfg.optim.backbone_lr_scale
    if (old == 1) != (new == 1) or (old == 0) != (new == 0):
        raise ValueError(f"{path}: optim.backbone_lr_scale {old:g} -> {new:g} changes which parameters the optimizer "
                         f"holds (1: one learning rate, 0: a frozen backbone, else two); keep {old:g} to resume")
    plan = ResumePlan(path, int(ckpt["epoch"]), int(ckpt.get("batch", 0)), int(ckpt["step"]), saved)
    if plan.epoch > cfg.epochs or (plan.epoch == cfg.epochs and plan.batch):
        raise ValueError(f"{path}: the checkpoint is at {plan.where}, past epochs: {cfg.epochs}; a run cannot be "
                         f"shortened (pass --epochs {plan.epoch + (1 if plan.batch else 0)} or more)")
    saved_batch = saved.get("batch_size", cfg.batch_size)
    if plan.batch and saved_batch != cfg.batch_size:
        raise ValueError(f"{path}: the checkpoint is in the middle of epoch {plan.epoch + 1} (batch {plan.batch} of "
                         f"{saved_batch} images); with batch_size {cfg.batch_size} the rest of the epoch would skip or "
                         f"repeat images (keep --batch_size {saved_batch}, or change it when resuming from an "
                         "end-of-epoch checkpoint)")
    return plan


def restore_states(ckpt: dict[str, Any], plan: ResumePlan, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler, main: bool) -> None:
    """Load the model, optimiser, scaler and schedule states of ``ckpt``, keeping the hyper-parameters the config
    sets (the optimiser's state dict would bring back the checkpoint's)."""
    configured = [{k: g[k] for k in ("initial_lr", "weight_decay", "momentum") if k in g}
                  for g in optimizer.param_groups]
    _match_saved_groups(optimizer, model, ckpt["optimizer"], main)
    try:
        model.load_state_dict(ckpt["model"])
        load_module_runtime_state(model, ckpt.get("runtime", {}))
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{plan.path}: checkpoint does not fit this model/optimizer: {e}") from e
    for group, values in zip(optimizer.param_groups, configured):
        group.update(values)
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    restore_schedule(scheduler, optimizer, ckpt["scheduler"])


def restore_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, optimizer: torch.optim.Optimizer,
                     state: dict[str, Any]) -> None:
    """Continue the lr schedule at the checkpoint's step, on the curve of the *current* config.

    ``LambdaLR.load_state_dict`` would also restore the saved ``WarmupSchedule`` (its total steps, warm-up, min lr)
    and base lrs: extending a finished run (``--epochs`` larger) would then train at the old curve's end, lr 0.
    The step counters come from the checkpoint, the factor and base lr from the config; with an unchanged config
    the lr is the same float as in the uninterrupted run (the same ``base_lr * factor(step)`` expression).
    """
    state = dict(state)
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)  # keep the factor built from the current config
    state["base_lrs"] = [g["initial_lr"] for g in optimizer.param_groups]
    scheduler.load_state_dict(state)
    lrs = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = list(lrs)


def _match_saved_groups(optimizer: torch.optim.Optimizer, model: nn.Module, saved: dict[str, Any],
                        main: bool) -> None:
    """A run started before ``no_weight_decay()`` was honoured keeps its two groups' membership (the fresh
    optimizer holds no state yet, so its groups can be refilled)."""
    sizes = [len(g["params"]) for g in saved.get("param_groups", [])]
    if sizes == [len(g["params"]) for g in optimizer.param_groups]:
        return
    legacy = split_decay(model, named=False)
    if sizes == [len(p) for p in legacy]:
        for group, params in zip(optimizer.param_groups, legacy):
            group["params"] = params
        if main:
            logger.info("resume: keeping the checkpoint's weight-decay groups (it decays what no_weight_decay() "
                        "names, as vqsa did when the run started)")


def report_changes(plan: ResumePlan, cfg: TrainConfig, scheduler: torch.optim.lr_scheduler.LambdaLR,
                   optimizer: torch.optim.Optimizer) -> None:
    """One line naming the settings that differ from the checkpoint's, one more when they reshape the schedule.
    Where the run folder is (``output_dir``, ``name``) is not a setting: a moved run keeps its checkpoint's."""
    old, new = flatten(plan.saved_config), flatten(cfg.to_dict())
    changed = [k for k in new if k in old and old[k] != new[k] and k not in ("output_dir", "name")]
    if not changed:
        return
    logger.info("resume: settings differ from the checkpoint's: "
                + ", ".join(f"{k} {show_value(old[k])} -> {show_value(new[k])}" for k in changed))
    if any(k in SCHEDULE_KEYS for k in changed):
        o, total = cfg.optim, scheduler.lr_lambdas[0].total
        shape = "constant" if o.scheduler == "constant" else f"{o.scheduler} to {o.min_lr:g}"
        warmup = f", warm-up {o.warmup_epochs:g} epochs" if o.warmup_epochs else ""
        logger.info(f"resume: the learning-rate schedule follows the current config ({shape} over {cfg.epochs} "
                    f"epochs = {total} steps{warmup}): lr {optimizer.param_groups[0]['lr']:.4g} at step {plan.step}")


def finished_summary(run_dir: Path, cfg: TrainConfig, plan: ResumePlan, main: bool) -> dict[str, Any] | None:
    """The summary of a resumed run that already did all its epochs and wrote its final files (else None; on
    every rank)."""
    if plan.epoch < cfg.epochs or plan.batch:
        return None
    summary = None
    if main:
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None
        complete = (isinstance(summary, dict) and summary.get("steps") == plan.step
                    and summary.get("epochs") == cfg.epochs and (run_dir / "model.safetensors").is_file())
        summary = summary if complete else None  # else it stopped before its final files: write them now
    return dist.broadcast_object(summary)
