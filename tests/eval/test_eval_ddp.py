"""Exact distributed counting: 2 gloo processes on an uneven split give the single-process counts."""
import json
import os
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

from evalhelpers import PixelOracle, write_cifar10, write_cifar10_c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist

    import vqsa

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = vqsa.evaluate(PixelOracle(10), "cifar10-c", root, ["fog", "snow"], [1, 5], clean=True,
                            batch_size=2, num_workers=0, progress=False)
        with open(f"{out}/rank{rank}.json", "w") as f:
            counts = [[res.clean.correct, res.clean.total]] + [[c.correct, c.total] for c in res.cells]
            json.dump({"counts": counts, "world": res.meta["world_size"]}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_distributed_counts_are_exact(tmp_path):
    import vqsa

    labels = write_cifar10(tmp_path / "c", n=9)
    # rows made from 7 of the 9 clean images (manifest): 7 clean + 4 cells x 7 = 35 items over 2 ranks: 18 + 17
    info = write_cifar10_c(tmp_path / "c" / "CIFAR-10-C", ["fog", "snow"], n=7, clean_labels=labels)
    single = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path / "c", ["fog", "snow"], [1, 5], clean=True,
                           batch_size=2, num_workers=0, progress=False)
    expected = [[single.clean.correct, single.clean.total]] + [[c.correct, c.total] for c in single.cells]
    assert [t for _, t in expected] == [7] + [info["n"]] * 4
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "c"), str(tmp_path)), nprocs=2,
                       start_method="fork")
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["world"] == 2
        assert got["counts"] == expected  # every rank reports the reduced, exact totals
    assert np.sum(expected, axis=0)[1] == 35
