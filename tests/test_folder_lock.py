"""One writer per output folder: a second writer is refused naming the first one's PID; a killed writer's lock is
taken over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vqsa.utils.lock import LOCK_NAME, FolderInUseError, folder_lock

HOLD = "import sys, time; from vqsa.utils.lock import folder_lock\nwith folder_lock(sys.argv[1]):\n" \
       "    print('locked', flush=True)\n    time.sleep(120)\n"


@pytest.fixture
def holder(tmp_path, child_env):
    """A child process that holds the lock of tmp_path / 'out' until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], env=child_env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_with_the_first_ones_pid_then_takes_a_killed_ones_lock(tmp_path, holder):
    from vqsa.corruptions.dataset_writer import corrupt_arrays

    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(FolderInUseError, match=f"in use by PID {holder.pid}"):
        corrupt_arrays(tmp_path / "out", images, np.zeros(2, np.int64), ["contrast"], [1], progress=False)
    assert not (tmp_path / "out" / "contrast.npy").exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    summary = corrupt_arrays(tmp_path / "out", images, np.zeros(2, np.int64), ["contrast"], [1], progress=False)
    assert summary.written == 1 and (tmp_path / "out" / "contrast.npy").is_file()
    assert (tmp_path / "out" / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_training_into_a_folder_in_use_fails_before_any_work(tmp_path, holder):
    from vqsa.train.config import load_config
    from vqsa.train.engine import Trainer

    cfg = load_config(None, {"output_dir": str(tmp_path), "name": "out", "data.dataset": "digits", "epochs": 1})
    start = time.perf_counter()
    with pytest.raises(FolderInUseError, match=f"{tmp_path / 'out'} is in use by PID {holder.pid}"):
        Trainer(cfg)
    assert time.perf_counter() - start < 5


def test_the_lock_is_released_when_the_block_ends(tmp_path):
    with folder_lock(tmp_path / "x"):
        pass
    with folder_lock(tmp_path / "x"):
        pass
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        with folder_lock(tmp_path / "f"):
            pass


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
                    reason="needs Linux /proc children lists")
def test_killing_vqsa_corrupt_leaves_no_workers_behind(tmp_path, child_env):
    from PIL import Image

    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    for i in range(40):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(src / f"{i}.png")
    proc = subprocess.Popen([sys.executable, "-m", "vqsa", "corrupt", str(tmp_path / "src"), str(tmp_path / "out"),
                             "--corruptions", "all", "--jobs", "2", "--resize", "none", "--center-crop", "none",
                             "--quiet"], env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:
        workers |= {c for c in _children(proc.pid) if "spawn" in open(f"/proc/{c}/cmdline").read()}
        time.sleep(0.1)
    assert workers, "no worker processes seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "workers outlived their parent"
