"""Run by test_ddp.py under torchrun: a tiny training run; every rank dumps its final weights (rank 0 also the run)."""
import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from vqsa.train.config import load_config
from vqsa.train.engine import Trainer
from vqsa.utils import distributed as dist

logging.basicConfig(level=logging.INFO, format="%(message)s")  # a script shows vqsa's messages as it chooses
out = Path(sys.argv[1])
cfg = load_config(None, sys.argv[2:])
trainer = Trainer(cfg)
summary = trainer.fit()
state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, str(out / f"rank{dist.get_rank()}.safetensors"))
torch.save({"summary_val_acc": summary["val_acc"], "world": dist.get_world_size()}, out / f"rank{dist.get_rank()}.pt")
