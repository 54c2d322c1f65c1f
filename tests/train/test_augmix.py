"""AugMix and its Jensen-Shannon consistency as training options: seeded views, the three-view step, resume and
DDP bit-identical, clear errors for bad settings."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vqsa.data.augmix import AugMixTransform
from vqsa.data.cifar import ArrayDataset
from vqsa.data.mixed import CorruptionSchedule, MixedCorruptionDataset, collate_mixed
from vqsa.train.config import load_config
from vqsa.train.engine import Trainer
from vqsa.train.losses import jensen_shannon

from .test_ddp import WORKER
from .test_engine import _assert_same_run, _cfg, tiny_args

AUGMIX_JSD = {"corruption.augment": "augmix", "corruption.jsd": "true", "corruption.corruptions": "[]"}


def _dataset(augment_views=0, **kw):
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) % 3, ("a", "b", "c"),
                        "random")
    return MixedCorruptionDataset(data, CorruptionSchedule((), seed=3), lambda img, rng: img,
                                  augment=AugMixTransform(**kw), augment_views=augment_views)


def test_augmix_views_are_seeded_per_sample_and_epoch():
    ds = _dataset(augment_views=2)
    a, b = ds[1], ds[1]
    assert a["augmented"].shape == (2, 3, 32, 32) and a["augmented"].dtype == torch.uint8
    assert torch.equal(a["augmented"], b["augmented"])  # the same view in any worker or process
    assert not torch.equal(a["augmented"][0], a["augmented"][1])  # two independent views
    assert not torch.equal(ds[2]["augmented"][0], a["augmented"][0])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["augmented"], a["augmented"])
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    ds[1]
    assert torch.equal(torch.rand(1), before)  # the global torch RNG is left alone
    batch = collate_mixed([ds[0], ds[1]])
    assert batch["augmented"].shape == (2, 2, 3, 32, 32)
    plain = _dataset()[1]  # no extra views: the training image itself is the AugMix view
    assert "augmented" not in plain and not torch.equal(plain["image"], _dataset(augment_views=2)[1]["image"])


def test_jensen_shannon_is_zero_for_equal_views_and_positive_otherwise():
    logits = torch.randn(4, 5)
    assert jensen_shannon((logits, logits, logits)).item() == pytest.approx(0, abs=1e-6)
    other = jensen_shannon((logits, logits + torch.randn(4, 5), logits))
    assert other.item() > 0
    mix = torch.stack([F.softmax(v, 1) for v in (logits, logits * 2, -logits)]).mean(0)
    ref = sum(F.kl_div(mix.log(), F.softmax(v, 1), reduction="batchmean") for v in (logits, logits * 2, -logits)) / 3
    assert jensen_shannon((logits, logits * 2, -logits)).item() == pytest.approx(ref.item(), rel=1e-5)


def test_a_three_view_run_trains_and_resumes_bit_identically(tmp_path):
    extra = {**AUGMIX_JSD, "save_every": "2"}
    ref = Trainer(_cfg(tmp_path, "ref", 2, **extra))
    ref.fit()
    last = ref.logger.history[-1]
    assert np.isfinite(last["train_loss"]) and last["train_loss"] > last["train_ce"] + last["train_aux"]  # JSD
    assert last["train_images"] == 96  # the labelled images, not the views
    victim = Trainer(_cfg(tmp_path, "victim", 2, **extra))
    original = victim._save

    def save_then_die():
        original()
        if victim.step == 4:
            raise KeyboardInterrupt

    victim._save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        victim.fit()
    Trainer(_cfg(tmp_path, "victim", 2, **extra), resume=True).fit()
    _assert_same_run(tmp_path / "ref", tmp_path / "victim")


@pytest.mark.ddp
def test_two_process_augmix_jsd_run_ends_with_identical_weights(tmp_path, child_env):
    env = dict(child_env, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    args = tiny_args(tmp_path, "ddp", 1, **{"eval.enabled": "false", "batch_size": "16", **AUGMIX_JSD})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


@pytest.mark.parametrize("settings, match", [
    ({"corruption.jsd": "true"}, "needs corruption.augment: augmix"),
    ({**AUGMIX_JSD, "corruption.pairs": "true"}, "choose one"),
    ({"corruption.augment": "augmix", "corruption.augmix_severity": "11"}, "severity 1..10"),
    ({"corruption.augment": "augmix", "corruption.augmix_alpha": "0"}, "alpha must be > 0"),
    ({"corruption.augment": "augmx"}, "must be one of none, augmix"),
    ({**AUGMIX_JSD, "corruption.jsd_weight": "-1"}, "jsd_weight.*>= 0"),
])
def test_bad_augmix_settings_are_named(tmp_path, settings, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, tiny_args(tmp_path, "bad", **settings))
