"""The end of a run: its final weights, the corruption evaluation on the validation arrays, and summary.json."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqsa.utils.io import atomic_write_json
from vqsa.utils.meta import git_sha, machine, versions

from .logs import format_summary
from .monitor import usage_summary

if TYPE_CHECKING:
    from .engine import Trainer

logger = logging.getLogger(__name__)

RESULT_FILES = ("results.json", "results.csv", "results.md", "results.png")


def finish_run(trainer: Trainer, wall: float) -> dict[str, Any]:
    """Final weights, the corruption evaluation and summary.json of a run whose epochs are done; returns the
    summary."""
    final = trainer.logger.history[-1] if trainer.logger.history else {}
    summary: dict[str, Any] = {
        "name": trainer.cfg.name, "epochs": trainer.cfg.epochs, "steps": trainer.step, "world_size": trainer.world,
        "effective_batch_size": trainer.cfg.batch_size * trainer.world, "wall_time_s": wall,
        "train_corruptions": list(trainer.train_corruptions), "eval_corruptions_known": trainer.known,
        "eval_corruptions_unknown": trainer.unknown, "compute": trainer.plan.to_dict(),
    }
    summary.update({k: final[k] for k in ("train_loss", "train_acc", "val_acc", "codebook_perplexity",
                                           "codebook_used") if k in final})
    if trainer.vq is not None:
        summary["codebook"] = usage_summary(trainer.logger.history, trainer.vq.codebook_size)
    if trainer.main:
        if not (trainer.cfg.eval.enabled and trainer.data.val_arrays is not None):
            _mark_stale_results(trainer)
        _save_final_weights(trainer)
    evaluation = _evaluate(trainer)
    if evaluation is not None:
        summary["evaluation"] = evaluation
    if trainer.main:
        info = dict(summary, config=trainer.cfg.to_dict(), model_config=trainer.model_config, versions=versions(),
                    git_sha=git_sha(), machine=machine())
        atomic_write_json(trainer.run_dir / "summary.json", info)
        scalars = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
        logger.info("summary:\n" + format_summary(scalars))
        if evaluation is not None:
            logger.info(evaluation_line(evaluation, trainer.run_dir))
    return summary


def _mark_stale_results(trainer: Trainer) -> None:
    """Rename the results.* of earlier weights (a resumed run extended with the evaluation off) to
    results.stale.*, so that no results file sits beside weights it does not describe."""
    old = [name for name in RESULT_FILES if (trainer.run_dir / name).is_file()]
    for name in old:
        os.replace(trainer.run_dir / name, trainer.run_dir / name.replace("results.", "results.stale.", 1))
    if old:
        why = "eval.enabled is false" if not trainer.cfg.eval.enabled else "the validation set is an image folder"
        logger.warning(f"renamed {', '.join(old)} (the evaluation of the earlier weights) to results.stale.*: "
                       f"this run writes no new evaluation ({why}); `vqsa evaluate --checkpoint {trainer.run_dir} "
                       "...` evaluates the new weights")


def _save_final_weights(trainer: Trainer) -> None:
    from vqsa.models import save_model

    save_model(trainer.model, trainer.run_dir / "model.safetensors")


def _evaluate(trainer: Trainer) -> dict[str, Any] | None:
    """``vqsa.evaluate`` on the validation arrays (clean + eval corruptions); results.json in the run folder."""
    if not trainer.cfg.eval.enabled:
        return None
    if trainer.data.val_arrays is None:
        if trainer.main:
            logger.warning("corruption evaluation skipped: the validation set is an image folder; evaluate the run "
                           f"with `vqsa evaluate --checkpoint {trainer.run_dir} --dataset imagenet-c`")
        return None
    from vqsa.eval import evaluate

    e = trainer.cfg.eval
    # on the whole split with the subset's indices: results.json then records split indices, and
    # `vqsa evaluate --indices-from RUN/results.json` repeats this evaluation
    data, indices = trainer.data.val_split or (trainer.data.val_arrays, None)
    results = evaluate(
        trainer.model, data, corruptions=trainer.known + trainer.unknown, severities=tuple(e.severities),
        batch_size=e.batch_size, num_workers=trainer.plan.workers, amp=trainer.plan.precision != "float32",
        limit=e.n_examples, indices=indices, seed=trainer.cfg.seed, profile=e.profile, device=trainer.device,
        train_corruptions=list(trainer.train_corruptions), progress=trainer.main,
        model_info={**trainer.model_config, "label": trainer.cfg.name},
    )
    if trainer.main:
        results.save(trainer.run_dir)
    return results.summary()


def evaluation_line(ev: dict[str, Any], run_dir: Path) -> str:
    """The end-of-training evaluation in one line: accuracies and mCE where defined, and where the tables are."""
    parts = [f"{name} {ev[key]:.2f} %" for name, key in (
    ("clean acc", "clean_accuracy"), ("known acc", "known_accuracy"), ("unknown acc", "unknown_accuracy"),
    ("mCE", "mce")) if ev.get(key) is not None]
    return f"evaluation: {', '.join(parts)} (tables: {run_dir / 'results.md'})"
