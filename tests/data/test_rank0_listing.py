"""Dataset folders are listed on rank 0 only and broadcast: 2 gloo processes, rank 1 forbidden to touch the file
system, end with the single-process listings, and with the same error when the tree is bad."""
import datetime
import json
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from vqsa.data.imagenet_subsets import imagenet_wnids, subset_wnids
from vqsa.eval.datasets import build_plan
from vqsa.train.config import config_from_dict
from vqsa.train.inputs import build_train_data
from vqsa.utils import distributed as dist

FORBIDDEN = ("scandir", "listdir", "stat", "lstat")


def _touch(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()


def _write_trees(root: Path) -> None:
    """Empty files are enough: listing never decodes an image."""
    wnids = imagenet_wnids()
    for k in (5, 990, 3):
        files = [f"ILSVRC2012_val_{k:05d}{j}.JPEG" for j in range(2)]
        _touch(root / "good" / "imagenet" / "val" / wnids[k], files)
        for c in ("fog", "snow"):
            for s in (1, 2):
                _touch(root / "good" / "imagenet-c" / c / str(s) / wnids[k], files)
    (root / "good" / "imagenet-c" / "snow" / "2" / wnids[3] / "notes.txt").touch()  # not an image: ignored
    _touch(root / "good" / "imagenet-r" / subset_wnids("imagenet-r")[7], ["a.jpg", "b.png"])
    _touch(root / "val_only" / "imagenet" / "val" / wnids[42], ["x.JPEG"])
    for split in ("train", "val"):
        _touch(root / "good" / split / "cat", ["1.jpg", "0.png", "skip.txt"])
        _touch(root / "good" / split / "dog" / "sub" / "deeper", ["z.jpeg"])
        _touch(root / "good" / split / "dog", ["y.jpg"])
    (root / "bad" / "train" / "cat").mkdir(parents=True)  # a class folder without images
    _touch(root / "bad" / "val" / "cat", ["1.jpg"])
    _touch(root / "no_val" / "train" / "cat", ["1.jpg"])


def _describe_plan(plan) -> dict:
    cells = []
    for cell in plan.cells:
        images = getattr(cell.images, "base", cell.images)  # on-the-fly cells: their folder
        cells.append([cell.corruption, cell.severity, cell.images.description, len(cell.images),
                      [str(images.path(i)) for i in range(len(images))], images._labels.tolist()])
    subset = None if plan.class_subset is None else plan.class_subset.tolist()
    return {"dataset": plan.dataset, "source": plan.source, "baseline": plan.baseline,
            "num_classes": plan.num_classes, "cells": cells, "class_subset": subset, "skipped": plan.skipped,
            "notes": plan.notes, "data": plan.data}


def _describe_train(root: Path, train: str = "train", val: str = "val") -> dict:
    cfg = config_from_dict({"data": {"dataset": "imagefolder", "root": str(root), "train_split": train,
                                     "val_split": val}})
    data = build_train_data(cfg)
    return {"classes": list(data.classes), "train": data.train.samples, "val": data.val.samples,
            "labels": data.train.labels.tolist(), "description": data.description}


class NeedsTwoArgs(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} and {b}")  # pickles, but cannot be rebuilt from its args


def _raise_custom():
    raise NeedsTwoArgs("one", "two")


def _scenarios(root: Path) -> dict:
    good = root / "good"
    return {
        "imagenet-c released": lambda: _describe_plan(build_plan("imagenet-c", good, ["fog", "snow"], [1, 2])),
        "imagenet-c on the fly": lambda: _describe_plan(build_plan("imagenet-c", root / "val_only", ["fog"], [3])),
        "imagenet-r": lambda: _describe_plan(build_plan("imagenet-r", good)),
        "train folders": lambda: _describe_train(good),
        "imagenet-c missing cells": lambda: build_plan("imagenet-c", good, ["fog", "frost", "snow"], [1, 2]),
        "imagenet-a missing": lambda: build_plan("imagenet-a", good),
        "missing data root": lambda: build_plan("imagenet", root / "nowhere"),
        "train empty class": lambda: _describe_train(root / "bad"),
        "train missing val": lambda: _describe_train(root / "no_val"),
        "unpicklable result": lambda: callable(dist.run_on_rank0(lambda: lambda: 0)),
        "unrebuildable error": lambda: dist.run_on_rank0(_raise_custom),
        "guard": lambda: sorted(os.listdir(root)),  # outside run_on_rank0: rank 1 must fail
    }


def _run_scenarios(root: Path, touched: list) -> dict:
    out = {}
    for name, fn in _scenarios(root).items():
        touched.clear()
        with warnings.catch_warnings(record=True) as caught:  # recorded, not shown (showing reads source files)
            warnings.simplefilter("always")
            try:
                outcome = {"ok": fn()}
            except Exception as e:  # noqa: BLE001 - the outcome under test
                outcome = {"error": [type(e).__name__, str(e)]}
        outcome["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        outcome["touched"] = sorted(set(touched))
        out[name] = outcome
    return json.loads(json.dumps(out))  # tuples -> lists, as read back from the workers' files


def _forbid_file_system(root: Path, touched: list) -> dict:
    """Make the ``os`` listing functions record their name and fail on paths under ``root`` (elsewhere they work:
    torch reads its own source files when it unpickles a tensor); returns the originals."""
    originals = {name: getattr(os, name) for name in FORBIDDEN}
    for name in FORBIDDEN:
        def guarded(path=".", *args, _name=name, **kwargs):
            if isinstance(path, (str, os.PathLike)) and os.path.abspath(path).startswith(str(root)):
                touched.append(_name)
                raise PermissionError(f"rank 1 called os.{_name} on {path}")
            return originals[_name](path, *args, **kwargs)
        setattr(os, name, guarded)
    return originals


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch
    import torch.distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    touched: list = []
    originals = _forbid_file_system(Path(root), touched) if rank == 1 else {}
    try:
        results = _run_scenarios(Path(root), touched)
    finally:
        for name, fn in originals.items():
            setattr(os, name, fn)
        torch.distributed.destroy_process_group()
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(results, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> tuple[dict, dict, dict]:
    """(single process, rank 0, rank 1) outcomes of every scenario."""
    tmp = tmp_path_factory.mktemp("listing")
    _write_trees(tmp / "data")
    single = _run_scenarios(tmp / "data", [])
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp / "data"), str(tmp)), nprocs=2, start_method="fork")
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]
    return single, ranks[0], ranks[1]


def test_single_process_listings_and_errors(outcomes):
    single, _, _ = outcomes
    released = single["imagenet-c released"]["ok"]
    assert [c[:2] for c in released["cells"]] == [["clean", 0], ["fog", 1], ["fog", 2], ["snow", 1], ["snow", 2]]
    assert all(c[3] == 6 and c[5] == [3, 5, 990] for c in released["cells"])  # wnid folders sorted, notes.txt out
    otf = single["imagenet-c on the fly"]
    root = otf["ok"]["data"]["root"]  # the warning names the folder it used, not a template path
    message = (f"no released imagenet-c under {root}; corrupting ImageNet val ({Path(root) / 'imagenet' / 'val'}) "
               "on the fly (seed 0, profile auto)")
    assert otf["warnings"] == [message]
    assert single["imagenet-r"]["ok"]["class_subset"] is not None
    train = single["train folders"]["ok"]
    assert train["classes"] == ["cat", "dog"] and train["labels"] == [0, 0, 1, 1]
    assert [Path(p).relative_to(Path(p).parents[2]).as_posix() for p, _ in train["train"][:2]] == [
        "train/cat/0.png", "train/cat/1.jpg"]
    assert train["train"][2][0].endswith("dog/y.jpg") and train["train"][3][0].endswith("dog/sub/deeper/z.jpeg")
    errors = {k: v["error"] for k, v in single.items() if "error" in v}
    assert errors["imagenet-c missing cells"][0] == "FileNotFoundError"
    assert "2 imagenet-c cell(s) missing" in errors["imagenet-c missing cells"][1]
    assert errors["imagenet-a missing"][0] == "FileNotFoundError"
    assert errors["missing data root"][0] == "FileNotFoundError"
    assert errors["train empty class"][0] == "ValueError" and "no images" in errors["train empty class"][1]
    assert errors["train missing val"][0] == "FileNotFoundError" and "does not exist" in errors["train missing val"][1]
    assert errors["unrebuildable error"] == ["NeedsTwoArgs", "one and two"]
    assert single["unpicklable result"]["ok"] is True  # no process group: a plain call, nothing pickled


def test_rank1_gets_rank0_listings_without_touching_the_file_system(outcomes):
    single, rank0, rank1 = outcomes
    for name in ("imagenet-c released", "imagenet-c on the fly", "imagenet-r", "train folders"):
        assert "ok" in rank1[name], (name, rank1[name])
        assert rank0[name] == rank1[name] == single[name], name
        assert rank1[name]["touched"] == []
    assert rank1["guard"]["error"][0] == "PermissionError" and rank1["guard"]["touched"] == ["listdir"]
    assert "ok" in rank0["guard"]  # the guard only fences rank 1


def test_bad_trees_raise_the_same_error_on_every_rank(outcomes):
    single, rank0, rank1 = outcomes
    for name in ("imagenet-c missing cells", "imagenet-a missing", "missing data root", "train empty class",
                 "train missing val"):
        assert "error" in rank1[name], (name, rank1[name])
        assert rank0[name] == rank1[name] == single[name], name
        assert rank1[name]["touched"] == []
    assert rank0["unpicklable result"]["error"] == rank1["unpicklable result"]["error"]
    assert rank0["unrebuildable error"]["error"] == ["NeedsTwoArgs", "one and two"]
    assert rank1["unrebuildable error"]["error"] == ["RuntimeError", "rank 0 raised NeedsTwoArgs: one and two"]


def test_broadcast_helpers_without_a_process_group():
    obj = {"a": [1, 2]}
    assert dist.broadcast_object(obj) is obj
    assert dist.run_on_rank0(lambda x, y=0: (x, y), 1, y=2) == (1, 2)
    with pytest.raises(NeedsTwoArgs, match="one and two"):
        dist.run_on_rank0(_raise_custom)


def _slow_listing(seconds: float) -> str:
    import time
    time.sleep(seconds)
    return "listed"


def _slow_rank0_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=2))
    try:
        outcome = {"ok": dist.run_on_rank0(_slow_listing, 5.0)}
    except Exception as e:  # noqa: BLE001 - the outcome under test
        outcome = {"error": f"{type(e).__name__}: {e}"}
    with open(f"{out}/slow{rank}.json", "w") as f:
        json.dump(outcome, f)
    torch.distributed.destroy_process_group()


def test_other_ranks_outwait_the_default_groups_timeout_while_rank0_lists(tmp_path):
    """Listing ImageNet-C on a network file system can take longer than the default group's timeout (10 minutes
    under NCCL): the broadcast waits on its own gloo group with ``OBJECT_TIMEOUT``. Here the default group times out
    after 2 s and rank 0 lists for 5 s."""
    mp.start_processes(_slow_rank0_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    assert [json.loads((tmp_path / f"slow{r}.json").read_text()) for r in range(2)] == [{"ok": "listed"}] * 2
