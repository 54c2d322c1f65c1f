"""Two CPU processes (gloo) under torchrun end with identical weights, codebook included."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .test_engine import tiny_args

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.ddp
def test_two_process_gloo_run_ends_with_identical_weights(tmp_path, child_env):
    env = dict(child_env, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    args = tiny_args(tmp_path, "ddp", 2, **{"eval.enabled": "false", "batch_size": "16"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    codebook = [k for k in w0 if "codebook" in k]
    assert codebook and w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert "effective batch size 16 x 2 process(es) = 32" in proc.stderr
    records = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    # metrics are summed exactly over ranks: 96 images = 2 ranks x 3 steps x 16
    assert [r["train_images"] for r in records] == [96, 96] and records[-1]["step"] == 6
    # only rank 0 writes the run folder; both ranks see the same reduced validation accuracy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "rank0.pt", "rank0.safetensors", "rank1.pt",
                                                         "rank1.safetensors"]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0 == r1 and r0["world"] == 2 and r0["summary_val_acc"] == records[-1]["val_acc"]
