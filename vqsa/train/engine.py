"""The training loop: mixed clean + corrupted batches, Eq. (10) loss, DDP, AMP, atomic checkpoints and exact resume.

``train(cfg)`` runs the same way in one process and under ``torchrun --nproc_per_node=N`` (one process per device,
``DistributedDataParallel``, a ``DistributedSampler``); only rank 0 writes files. Everything random about the data
is a function of ``(seed, epoch, index)`` and the optimiser/scheduler/scaler/RNG states are checkpointed, so on the
CPU a run killed after any checkpoint and resumed ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vqsa.data.mixed import ArraySource, collate_mixed
from vqsa.data.transforms import to_float
from vqsa.utils import distributed as dist
from vqsa.utils.io import atomic_write_text
from vqsa.utils.lock import check_not_locked, folder_lock

from .checkpointing import (
    CHECKPOINT_NAME,
    module_runtime_state,
    save_checkpoint,
    set_rng_state,
)
from .compute import ComputePlan, cached_probe, plan_compute, probe_step_rates, resolve_corrupt_on
from .config import TrainConfig, to_yaml
from .inputs import TrainData, build_datasets, build_train_data, resolve_corruptions
from .logs import MetricsLogger
from .monitor import check_usage
from .optim import build_optimizer, build_scheduler, freeze_backbone, train_mode
from .finalize import finish_run
from .losses import jensen_shannon
from .resume import finished_summary, open_checkpoint, plan_resume, report_changes, restore_states
from .setup import ResumableSampler, build_model, check_outputs, select_device, split_eval_corruptions

logger = logging.getLogger(__name__)


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
# The corruption evaluation's files in the run folder (vqsa.eval's Results.save).


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped without overwriting the last good checkpoint."""


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
        self.device = select_device(cfg)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.run_dir = cfg.run_dir()
        if self.main:
            check_not_locked(self.run_dir)  # another process training into this folder: say so before any work
        ckpt, ckpt_path = open_checkpoint(self.run_dir, resume, self.main)
        weights = cfg.model.pretrained
        if model is None and ckpt is None and isinstance(weights, str) and not Path(weights).is_file():
            raise FileNotFoundError(f"model.pretrained: no weights file at {weights!r}")  # before the data is read

        self.train_corruptions = resolve_corruptions(cfg.corruption.corruptions)
        self.known, self.unknown = split_eval_corruptions(cfg, self.train_corruptions)
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
        check_outputs(self.model_config.get("num_classes"), len(self.data.classes))
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
        """Continue from ``ckpt`` (checked first, then applied); returns its metrics history."""
        plan = plan_resume(ckpt, path, self.cfg, self.model_config)
        restore_states(ckpt, plan, self.model, self.optimizer, self.scheduler, self.scaler, self.main)
        self.epoch, self.batch_in_epoch, self.step = plan.epoch, plan.batch, plan.step
        if "sums" in ckpt:
            self.sums.copy_(ckpt["sums"].to(self.device))
        if self.main:
            logger.info(f"resumed {path} at {plan.where} (step {plan.step})")
            report_changes(plan, self.cfg, self.scheduler, self.optimizer)
        self.finished = finished_summary(self.run_dir, self.cfg, plan, self.main)
        return list(ckpt.get("history", []))

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
        summary = finish_run(self, time.perf_counter() - t_start)
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


def train(
    cfg: TrainConfig, *, model: nn.Module | None = None, data: TrainData | None = None,
    resume: str | Path | bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training run described by ``cfg``; see :class:`Trainer`."""
    return Trainer(cfg, model=model, data=data, resume=resume).fit()
