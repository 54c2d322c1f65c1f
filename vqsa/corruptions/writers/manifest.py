"""The ``vqsa_corrupt.json`` manifest that claims a destination for one dataset and its settings, and the
cleanup of a killed run's temporary files."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from vqsa.utils.io import (
    atomic_write_checked_json,
    read_checked_json,
)
from vqsa.utils.lock import LOCK_NAME

MANIFEST_NAME = "vqsa_corrupt.json"


_MANIFEST_FORMAT = "vqsa-corrupt/1"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest ``vqsa corrupt`` wrote into ``folder``: None when there is none (or it is not a JSON object);
    ValueError when it cannot be read or parsed."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = read_checked_json(path)  # a damaged one raises, naming itself
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable manifest ({e})") from e
    return manifest if isinstance(manifest, dict) else None


def claim_destination(dst: Path, kind: str, settings: dict[str, Any], info: dict[str, Any]) -> None:
    """Create ``dst`` with a manifest, or check that an existing manifest has the same settings."""
    manifest = dst / MANIFEST_NAME
    settings = json.loads(json.dumps(settings))
    if manifest.is_file():
        try:
            old = read_manifest(dst)
            if old is None:
                raise ValueError(f"{manifest}: unreadable manifest (not a JSON object)")
        except ValueError as e:
            raise ValueError(f"{e}; delete it only if {dst} is yours") from e
        if old.get("kind") != kind:
            raise ValueError(f"{dst} holds a {old.get('kind')!r} dataset, not a {kind!r} one; choose another folder")
        if kind == "folder" and old.get("source", info["source"]) != info["source"]:  # both resolved paths
            raise ValueError(f"{dst} was written from {old['source']}, not {info['source']}: its finished files would "
                             "be kept as they are; use that source or a new folder")
        old_settings = old.get("settings", {})
        diff = sorted(k for k in settings.keys() | old_settings.keys() if settings.get(k) != old_settings.get(k))
        if diff:
            raise ValueError(f"{dst} was written with other settings ({_describe_diff(diff, old_settings, settings)});"
                             " use the same options or a new folder")
        return
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"destination {str(dst)!r} exists and is not a folder")
    if dst.is_dir() and any(p.name != LOCK_NAME for p in dst.iterdir()):
        raise ValueError(f"destination {str(dst)!r} is not empty and has no {MANIFEST_NAME}; choose a new folder")
    from vqsa.utils.meta import versions

    atomic_write_checked_json(
        manifest,
        {"format": _MANIFEST_FORMAT, "kind": kind, "settings": settings, **info, "versions": versions()},
    )


_SETTING_NAMES = {"n": "number of images n (--limit)"}


def _describe_diff(keys: list[str], old: dict[str, Any], new: dict[str, Any]) -> str:
    """The differing manifest settings in words; the sha256 of the per-image keys only as "other images"."""
    parts = [f"{_SETTING_NAMES.get(k, k)}: {old.get(k)!r} there vs {new.get(k)!r} now" for k in keys
             if k != "keys_sha256"]
    if "keys_sha256" in keys:
        parts.append("a different selection of source images (another --limit or --seed draws other test images)"
                     if "n" in keys or "seed" in keys or not parts else "a different selection of source images")
    return "; ".join(parts)


def remove_stale_temporaries(dst: Path) -> int:
    """Delete temporary files left by an interrupted atomic write (``.<name>.<random>.tmp``) under ``dst``."""
    removed = 0
    for dirpath, _, filenames in os.walk(dst):
        for f in filenames:
            if f.startswith(".") and f.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, f))
                    removed += 1
    return removed
