"""Weights that ship inside the package: safetensors files under ``vqsa/weights/``, listed with their sha256 in
``vqsa/weights/manifest.json`` and verified before every load.

``create_model(name, pretrained=True)`` loads them offline for the backbones the manifest names
(``list_models(source="vqsa", pretrained=True)``). A file whose hash differs from the manifest's is refused with
an error naming it; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from vqsa.utils.io import atomic_write_checked_json, read_checked_json

from .weights_io import WeightsIntegrityError, read_checkpoint, resolve_weights_file, safetensors_bytes

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ShippedWeights:
    """One manifest entry: the backbone it is for, its file, sha256, classes and model card figures."""

    name: str
    file: str
    sha256: str
    num_classes: int
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def shipped_weights() -> dict[str, ShippedWeights]:
    """The manifest's entries by backbone name (empty when no weights ship)."""
    path = WEIGHTS_DIR / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = read_checked_json(path)
        return {name: ShippedWeights(name=name, **entry) for name, entry in data.items()}
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a valid weights manifest: {e}") from e


def verify_file(path: str | os.PathLike, sha256: str) -> None:
    """Raise :class:`WeightsIntegrityError` (or ``FileNotFoundError``) unless ``path`` has this sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the weights file is missing (reinstall vqsa)")
    got = sha256_file(path)
    if got != sha256:
        raise WeightsIntegrityError(f"{path}: sha256 {got[:16]}... differs from the recorded {sha256[:16]}...: the "
                                    "file is damaged or was replaced (reinstall vqsa)")


def load_shipped(model: nn.Module, name: str, *, weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """Load the shipped weights of backbone ``name`` into ``model`` (a freshly built backbone) after checking
    their sha256.

    With the manifest's ``num_classes`` the classifier loads too; with 0 (no classifier) or another count the
    backbone loads and the classifier keeps its fresh initialisation (with a warning for another count, as timm).
    """
    from safetensors.torch import load_file

    entries = shipped_weights()
    if name not in entries:
        have = ", ".join(sorted(entries)) or "none"
        raise RuntimeError(f"vqsa ships no pretrained weights for {name!r} (it ships: {have})")
    entry = entries[name]
    path = Path(weights_dir) / entry.file if weights_dir is not None else entry.path
    verify_file(path, entry.sha256)
    state = load_file(str(path))
    classes = int(getattr(model, "num_classes", entry.num_classes))
    head = {k for k in state if k.startswith("fc.")}
    if classes != entry.num_classes:
        state = {k: v for k, v in state.items() if k not in head}
        if classes:
            warnings.warn(f"{name}: the shipped classifier has {entry.num_classes} outputs, not {classes}: the "
                          "backbone is pretrained, the classifier is new", stacklevel=3)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not fit {name}: {str(e).splitlines()[0]}") from e
    missing = [k for k in missing if not (classes != entry.num_classes and k.startswith("fc."))]
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit {name}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    logger.info("loaded %s (sha256 %s...)", path, entry.sha256[:12])
    return model


def backbone_state(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backbone's own state dict (its classifier as ``fc.*``) and model config of a vqsa weights file or run
    folder trained with ``model.vq: false``."""

    path = Path(path)
    state, config = read_checkpoint(resolve_weights_file(path) if path.is_dir() else path)
    if not config or config.get("vq"):
        raise ValueError(f"{path}: not a vqsa baseline model (model.vq: false): cannot export its backbone alone")
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.model."):
            out[key[len("backbone.model."):]] = value.contiguous()
        elif key.startswith("fc."):
            out[key] = value.contiguous()
        else:
            raise ValueError(f"{path}: unexpected key {key!r} for a backbone export")
    return out, config


def export_weights(source: str | os.PathLike, name: str, card: dict[str, Any],
                   weights_dir: str | os.PathLike = WEIGHTS_DIR) -> ShippedWeights:
    """Write the backbone of ``source`` (a run folder or weights file) as ``<weights_dir>/<name>.safetensors``
    and record it, its sha256 and ``card`` in the manifest. The file's bytes depend only on the tensors."""
    from vqsa.utils.io import atomic_write_bytes


    state, config = backbone_state(source)
    if config["name"] != name:
        raise ValueError(f"{source}: holds a {config['name']!r} backbone, not {name!r}")
    weights_dir = Path(weights_dir)
    data = safetensors_bytes(state, {"format": "pt"})
    entry = ShippedWeights(name=name, file=f"{name}_cifar10.safetensors", sha256=hashlib.sha256(data).hexdigest(),
                           num_classes=int(config["num_classes"]), card=card)
    atomic_write_bytes(weights_dir / entry.file, data)
    manifest_path = weights_dir / MANIFEST_NAME
    manifest = read_checked_json(manifest_path) if manifest_path.is_file() else {}
    manifest[name] = {"file": entry.file, "sha256": entry.sha256, "num_classes": entry.num_classes, "card": card}
    atomic_write_checked_json(manifest_path, dict(sorted(manifest.items())))
    shipped_weights.cache_clear()
    return entry
