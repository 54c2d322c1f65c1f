"""Training checkpoints: atomic save that keeps the previous one, integrity-checked ``weights_only`` load, RNG states
as tensors, resume compatibility checks.

A checkpoint is a torch zip archive; every member carries a CRC-32 that :func:`load_training_checkpoint` verifies
before anything is read (``torch.load`` does not), so a damaged file is refused instead of resuming with garbage
weights. :func:`save_checkpoint` keeps the one before as ``checkpoint_prev.pt``, and :func:`load_resume_checkpoint`
falls back to it when the last one is damaged or missing.
"""
from __future__ import annotations

import logging
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqsa.utils.io import atomic_torch_save
from vqsa.utils.meta import versions

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint_last.pt"
PREVIOUS_NAME = "checkpoint_prev.pt"


class CheckpointDamagedError(ValueError):
    """A checkpoint whose bytes fail their integrity check (bit flips, truncation)."""
_REQUIRED = ("model", "model_config", "optimizer", "scheduler", "epoch", "step", "rng", "config")


def rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors and lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def module_runtime_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State that ``state_dict()`` leaves out but an exact resume needs: non-persistent buffers (e.g. codebook usage
    counters) and the states of ``torch.Generator`` attributes (e.g. dead-code restart draws), keyed by path."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        for name in sorted(module._non_persistent_buffers_set):
            buf = module._buffers.get(name)
            if buf is not None:
                out[f"buffer:{dot}{name}"] = buf.detach().cpu().clone()
        for name, value in sorted(vars(module).items()):
            if isinstance(value, torch.Generator):
                out[f"generator:{dot}{name}"] = value.get_state()
    return out


def load_module_runtime_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`module_runtime_state` saved (entries the model does not have are an error)."""
    modules = dict(model.named_modules())
    for key, value in state.items():
        kind, _, path = key.partition(":")
        prefix, _, name = path.rpartition(".")
        module = modules.get(prefix)
        if module is None:
            raise ValueError(f"checkpoint runtime state {key!r} does not match the model")
        if kind == "buffer" and module._buffers.get(name) is not None:
            module._buffers[name].copy_(value)
        elif kind == "generator" and isinstance(getattr(module, name, None), torch.Generator):
            getattr(module, name).set_state(value)
        else:
            raise ValueError(f"checkpoint runtime state {key!r} does not match the model")


def resume_path(resume: str | os.PathLike) -> Path:
    """The checkpoint a ``--resume`` argument names: a run folder's ``checkpoint_last.pt``, or the file itself."""
    path = Path(resume)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(path: str | os.PathLike, **state: Any) -> None:
    """Write a training checkpoint atomically: the given entries plus ``versions`` and the RNG states. A checkpoint
    already at ``path`` becomes ``checkpoint_prev.pt`` beside it (the fallback of a damaged last one)."""
    missing = [k for k in _REQUIRED if k not in state and k != "rng"]
    if missing:
        raise ValueError(f"checkpoint is missing {missing}")
    state.setdefault("rng", rng_state())
    state["versions"] = versions()
    path = Path(path)
    if path.is_file():
        os.replace(path, path.with_name(PREVIOUS_NAME))
    atomic_torch_save(state, path)


def verify_archive(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointDamagedError` unless every member of the torch zip archive at ``path`` matches its
    CRC-32 (files that are not zip archives are left to the loader's own checks)."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise CheckpointDamagedError(f"{path}: damaged checkpoint archive ({e})") from e
    except OSError as e:
        raise ValueError(f"{path}: cannot read the file ({e.strerror or e})") from e
    if bad is not None:
        raise CheckpointDamagedError(f"{path}: damaged checkpoint: {bad} fails its CRC-32 check (bits changed on "
                                     "disk or in a copy)")


def load_resume_checkpoint(
    path: str | os.PathLike, *, mmap: bool = False, announce: bool = True
) -> tuple[dict[str, Any], Path]:
    """Load the checkpoint to resume from, and its path: ``path``, or the ``checkpoint_prev.pt`` beside a run
    folder's ``checkpoint_last.pt`` when that one is damaged or missing (said in one line on stderr when
    ``announce``)."""
    path = Path(path)
    previous = path.with_name(PREVIOUS_NAME)
    if path.name != CHECKPOINT_NAME or not previous.is_file():
        return load_training_checkpoint(path, mmap=mmap), path
    try:
        return load_training_checkpoint(path, mmap=mmap), path
    except (CheckpointDamagedError, FileNotFoundError) as e:
        ckpt = load_training_checkpoint(previous, mmap=mmap)
        if announce:
            logger.warning(f"resume: {e}; resuming from the checkpoint before it, {previous} "
                           f"(epoch {ckpt.get('epoch')}, step {ckpt.get('step')})")
        return ckpt, previous


def load_training_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no arbitrary unpickling).
    ``mmap=True`` maps the tensors instead of reading them (cheap when only the config or counters are needed).

    Anything else raises a one-line ``ValueError``: a weights file (``model.safetensors``, a state dict), a foreign,
    truncated or corrupt file.
    """
    from vqsa.models.weights_io import is_safetensors, torch_load_error_message

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    resume_hint = (f"resuming needs a run folder or its {CHECKPOINT_NAME} (the weights plus the optimizer, schedule "
                   "and RNG states)")
    if (path.parent / CHECKPOINT_NAME).is_file():
        resume_hint += f": here --resume {path.parent}"
    try:
        weights_file = is_safetensors(path)
    except OSError:
        weights_file = False
    if weights_file:
        raise ValueError(f"{path}: a weights file (model weights only), not a training checkpoint: {resume_hint}")
    verify_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign or damaged files
        raise ValueError(torch_load_error_message(path, e)) from e
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"{path}: a state dict (model weights only), not a training checkpoint: {resume_hint}")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED):
        what = f"lacks {[k for k in _REQUIRED if k not in ckpt]}" if isinstance(ckpt, dict) else \
            f"holds a {type(ckpt).__name__}"
        raise ValueError(f"{path}: not a vqsa training checkpoint (it {what}); {resume_hint}")
    return ckpt


def check_resume_compatible(ckpt: dict[str, Any], model_config: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse to resume a checkpoint of another architecture, naming the differing model settings."""
    saved = ckpt.get("model_config") or {}
    keys = sorted(set(saved) | set(model_config))
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs config {model_config.get(k)!r}" for k in keys
            if saved.get(k) != model_config.get(k)]
    if diff:
        raise ValueError(f"{path}: checkpoint is from another architecture, cannot resume ({'; '.join(diff)})")
