"""Reading and writing weight files, knowing nothing of how models are built: safetensors with deterministic
bytes, ``.pt`` state dicts and training checkpoints read with ``torch.load(weights_only=True)`` (nothing is
unpickled), prefix cleaning, and loading a state dict into a module with errors that name the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "vqsa"
_PREFIXES = ("module.", "_orig_mod.")


class WeightsIntegrityError(ValueError):
    """A weights file does not match its recorded sha256 (damaged, truncated or replaced)."""


#: Metadata key of the sha256 of a safetensors file's header and tensor data, written by :func:`safetensors_bytes`.
DATA_SHA256 = "sha256_data"


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file as bytes that depend only on the tensors and the metadata: the header is written with
    sorted keys (safetensors writes its metadata in hash order, which differs from process to process), and its
    metadata records the sha256 of the tensor data (``sha256_data``), which every read checks."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    body = data[8 + n :]
    header_obj = json.loads(data[8 : 8 + n])
    header_obj["__metadata__"] = {**header_obj.get("__metadata__", {}), DATA_SHA256: _content_sha256(header_obj, body)}
    header = json.dumps(header_obj, sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data section stays 8-byte aligned, as safetensors writes it
    return len(header).to_bytes(8, "little") + header + body


def _content_sha256(header: dict[str, Any], body: bytes) -> str:
    """sha256 of the header (tensor names, dtypes, shapes, offsets, metadata; without this hash) and the data."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != DATA_SHA256}
    canonical = json.dumps({**header, "__metadata__": meta}, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(len(canonical).to_bytes(8, "little") + canonical + body).hexdigest()


def verify_safetensors_data(path: Path, expected: str) -> None:
    """Raise :class:`WeightsIntegrityError` naming ``path`` when its header and tensor data do not hash to
    ``expected`` (the hash :func:`safetensors_bytes` recorded)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        body = f.read()
    if _content_sha256(header, body) != expected:
        raise WeightsIntegrityError(f"{path}: damaged weights file: its tensors do not match the sha256 recorded in "
                                    f"it ({expected[:12]}...), so it was changed after it was written")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from every key."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        out[key] = value
    return out


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e
    if DATA_SHA256 in meta:
        verify_safetensors_data(path, meta[DATA_SHA256])
    return state, meta


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (zip), EOFError, OSError...: one line, not torch's text
        raise ValueError(torch_load_error_message(path, e)) from e


def torch_load_error_message(path: str | os.PathLike, error: BaseException) -> str:
    """One line for a failed ``torch.load(path, weights_only=True)``, without torch's advice to retry with
    ``weights_only=False`` (vqsa never does: that would run whatever code the file holds)."""
    import re

    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(error))
    if found:
        return (f"{path}: not a vqsa checkpoint: it holds Python objects ({found.group(1)}), and vqsa reads "
                "checkpoints with weights_only=True (tensors and plain containers only, nothing executed)")
    try:
        empty = Path(path).stat().st_size == 0
    except OSError:
        empty = False
    if isinstance(error, OSError) and not empty:
        return f"{path}: cannot read the file ({error.strerror or error})"
    return f"{path}: not a vqsa/torch checkpoint, or a truncated/corrupt file" + (" (it is empty)" if empty else "")


def is_safetensors(path: Path) -> bool:
    """By suffix, else by content: safetensors starts with an 8-byte header length followed by a JSON ``{``."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        return f.read(9)[8:] == b"{"


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read ``(state_dict, model_config or None)`` from a safetensors file or a ``.pt`` dict, prefixes stripped.

    A ``.pt`` dict may be a plain state dict or hold it under ``model`` / ``state_dict`` (with ``model_config``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    config = None
    if is_safetensors(path):
        state, meta = _read_safetensors(path)
        if "model_config" in meta:
            try:
                config = json.loads(meta["model_config"])
            except ValueError as e:
                raise ValueError(f"{path}: its model_config metadata is not valid JSON ({e})") from e
            if not isinstance(config, dict):
                raise ValueError(f"{path}: its model_config metadata is a JSON {type(config).__name__}, not an "
                                 "object of create_model arguments")
    else:
        obj = _read_torch(path)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict (a state dict or a training checkpoint), got {type(obj)}")
        config = obj.get("model_config")
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        state = obj
        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"{path}: not a state dict (non-tensor entries such as {bad[:3]})")
    return clean_state_dict(state), config


def load_state_dict(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True, source: str = "") -> Any:
    """``model.load_state_dict`` with prefix cleaning and readable errors (see :func:`load_checkpoint`)."""
    model = unwrap(model)
    state = clean_state_dict(state)
    own = model.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    head = [k for k in shape_bad if k.startswith("fc.")]
    if head:
        k = head[0]
        raise ValueError(
            f"{source}: the classifier has {state[k].shape[0]} outputs in the checkpoint but {own[k].shape[0]} in "
            f"the model; build the model with num_classes={state[k].shape[0]}, or load with strict=False after "
            "model.reset_classifier(...) and drop the fc.* keys"
        )
    if shape_bad:
        detail = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape_bad[:5])
        raise ValueError(f"{source}: weight shapes differ from the model (wrong architecture?): {detail}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    matched = {k for k in set(own) & set(state) if not k.startswith("fc.")}  # the classifier alone is not a model
    if (strict and (missing or unexpected)) or not matched:
        bare = any(f"{p}{k}" in own for k in unexpected for p in ("backbone.body.", "backbone.model."))
        hint = ("; it holds the backbone network's own weights (torchvision / timm): build the model with "
                "vqsa.create_model(name, ..., pretrained=FILE) instead" if bare else "")
        message = (f"{source}: checkpoint does not match the model architecture: {len(missing)} missing keys "
                   f"{brief(missing)}, {len(unexpected)} unexpected keys {brief(unexpected)}{hint}")
        if strict:
            raise ValueError(message)
        warnings.warn(f"nothing loaded: {message}", stacklevel=3)
    return model.load_state_dict(state, strict=strict)


def brief(keys: list[str], n: int = 4) -> str:
    """The first ``n`` keys for an error message: ``[a, b, c, d, ...]``."""
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"


def resolve_weights_file(path: Path) -> Path:
    for name in ("model.safetensors", "checkpoint_last.pt"):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds neither model.safetensors nor checkpoint_last.pt")
