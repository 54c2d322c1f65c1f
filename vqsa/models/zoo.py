"""Weights that ship inside the package: safetensors files under ``vqsa/weights/``, listed with their sha256 in
``vqsa/weights/manifest.json`` and verified before every load.

Two kinds of entry: a backbone's pretrained weights (``cifar_airnet``: ``create_model("cifar_airnet",
pretrained=True)`` puts any head on them), and whole fine-tuned models named ``<backbone>.<tag>`` as timm names its
pretrained tags (``cifar_airnet.vqsa_c10c``: ``create_model(name, pretrained=True)`` rebuilds the recorded
architecture, codebook included, and loads every weight). ``list_models(source="vqsa", pretrained=True)`` lists
both. Whole models may be stored in float16 to stay small; they load into float32. A file whose hash differs from
the manifest's is refused with an error naming it; nothing is unpickled.
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
    model_config: dict[str, Any] | None = None  # whole models: create_model(**model_config) rebuilds them
    storage: str = "float32"  # the dtype of the stored floating-point tensors

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


def zoo_model(name: str) -> ShippedWeights | None:
    """The manifest entry of a whole shipped model (``<backbone>.<tag>``), None for other names."""
    entry = shipped_weights().get(name)
    return entry if entry is not None and entry.model_config is not None else None


def load_zoo_state(entry: ShippedWeights, weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The state dict of a whole shipped model, its sha256 checked first (tensors as stored)."""
    from safetensors.torch import load_file

    path = Path(weights_dir) / entry.file if weights_dir is not None else entry.path
    verify_file(path, entry.sha256)
    return load_file(str(path))


def export_model(source: str | os.PathLike, name: str, card: dict[str, Any], *, storage: str = "float16",
                 weights_dir: str | os.PathLike = WEIGHTS_DIR) -> ShippedWeights:
    """Write the whole model of ``source`` (a run folder or vqsa weights file) as ``<weights_dir>/<name>.safetensors``
    with its floating-point tensors in ``storage`` (``float16`` halves the file; values beyond its range are
    refused), and record its architecture, sha256 and ``card`` in the manifest under ``name``
    (``<backbone>.<tag>``)."""
    import torch

    from vqsa.utils.io import atomic_write_bytes

    dtypes = {"float16": torch.float16, "float32": torch.float32}
    if storage not in dtypes:
        raise ValueError(f"storage must be one of {list(dtypes)}, got {storage!r}")
    backbone, _, tag = name.partition(".")
    path = Path(source)
    state, config = read_checkpoint(resolve_weights_file(path) if path.is_dir() else path)
    if not config or config.get("name") != backbone or not tag:
        raise ValueError(f"{source}: a {config.get('name') if config else 'unknown'!r} model cannot ship as "
                         f"{name!r} (the name is <backbone>.<tag> of its own backbone)")
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            if storage == "float16" and value.abs().max().item() > torch.finfo(torch.float16).max:
                raise ValueError(f"{source}: {key} exceeds float16's range: ship it with storage='float32'")
            value = value.to(dtypes[storage])
        out[key] = value.contiguous()
    data = safetensors_bytes(out, {"format": "pt"})
    entry = ShippedWeights(name=name, file=f"{name.replace('.', '_')}.safetensors",
                           sha256=hashlib.sha256(data).hexdigest(), num_classes=int(config["num_classes"]),
                           card=card, model_config=config, storage=storage)
    weights_dir = Path(weights_dir)
    atomic_write_bytes(weights_dir / entry.file, data)
    _record(weights_dir, entry)
    return entry


def _record(weights_dir: Path, entry: ShippedWeights) -> None:
    """Put ``entry`` into the manifest of ``weights_dir``."""
    manifest_path = weights_dir / MANIFEST_NAME
    manifest = read_checked_json(manifest_path) if manifest_path.is_file() else {}
    record = {"file": entry.file, "sha256": entry.sha256, "num_classes": entry.num_classes, "card": entry.card}
    if entry.model_config is not None:
        record.update(model_config=entry.model_config, storage=entry.storage)
    manifest[entry.name] = record
    atomic_write_checked_json(manifest_path, dict(sorted(manifest.items())))
    shipped_weights.cache_clear()


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
    _record(weights_dir, entry)
    return entry
