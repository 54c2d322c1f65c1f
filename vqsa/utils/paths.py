"""Folder helpers: directory walks for dataset listings (links to folders are followed, as dataset trees are often
assembled from links, but never a link that leads back to a folder the walk came through, which would loop for
ever), and a run-folder comparison."""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator


def walk_tree(top: str | os.PathLike, *, skip_hidden: bool = False) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, followlinks=True)``, top-down, minus the folder links that loop: a link whose target is a
    folder the walk came through on its way here, or a folder above one (skipped with a warning; links between
    sibling trees that point at each other are caught too). ``skip_hidden`` also skips folders whose name starts
    with a dot. The caller may prune ``dirnames`` in place, as with ``os.walk``."""
    top = os.fspath(top)
    chains = {top: (os.path.realpath(top),)}  # real paths of the folders from top down to each pending folder
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        chain = chains.pop(dirpath)
        keep = []
        for d in dirnames:
            if skip_hidden and d.startswith("."):
                continue
            path = os.path.join(dirpath, d)
            if os.path.islink(path):  # only links can loop (one lstat per folder)
                real = os.path.realpath(path)
                inside = os.path.join(real, "")
                if any(c == real or c.startswith(inside) for c in chain):
                    warnings.warn(f"skipped folder link {path} -> {real}: it loops back to a folder above it",
                                  stacklevel=2)
                    continue
            else:
                real = os.path.join(chain[-1], d)
            chains[path] = (*chain, real)
            keep.append(d)
        dirnames[:] = keep
        yield dirpath, dirnames, filenames


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one folder, however written (``runs/x``, ``/abs/runs/x``, through a link); by absolute
    path when either does not exist (yet, or any more)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
