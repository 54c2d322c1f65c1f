"""The training run's compute plan: threads, workers, precision (probed), memory format, corruption engine."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vqsa.models import create_model
from vqsa.train import compute
from vqsa.train.compute import ComputePlan, choose_precision, plan_compute, probe_step_rates, resolve_workers
from vqsa.train.config import load_config, parse_overrides
from vqsa.train.engine import Trainer

CPU = torch.device("cpu")


def _no_probe(dtypes):
    raise AssertionError("the probe must not run here")


def _plan(monkeypatch, cpus=2, **kw):
    monkeypatch.setattr(compute, "usable_cpus", lambda: cpus)
    args = dict(device=CPU, threads=None, workers=None, amp=False, amp_dtype="bfloat16", channels_last=True,
                corrupt_on="auto", in_memory=True, world=1, probe=_no_probe)
    args.update(kw)
    threads = torch.get_num_threads()
    try:
        return plan_compute(**args)
    finally:
        torch.set_num_threads(threads)


def test_in_memory_data_is_corrupted_in_process_with_no_workers_and_every_core(monkeypatch):
    plan = _plan(monkeypatch, cpus=4)
    assert (plan.corrupt_on, plan.workers, plan.threads) == ("device", 0, 4)


def test_image_folders_get_workers_and_the_threads_they_leave_free(monkeypatch):
    plan = _plan(monkeypatch, cpus=4, in_memory=False)
    assert (plan.corrupt_on, plan.workers, plan.threads) == ("cpu", 2, 2)
    plan = _plan(monkeypatch, cpus=2, in_memory=False)
    assert (plan.workers, plan.threads) == (1, 1)


def test_explicit_settings_win_and_processes_share_the_cores(monkeypatch):
    plan = _plan(monkeypatch, cpus=4, workers=3, corrupt_on="cpu")
    assert (plan.corrupt_on, plan.workers, plan.threads) == ("cpu", 3, 1)
    assert _plan(monkeypatch, cpus=4, threads=3).threads == 3
    assert _plan(monkeypatch, cpus=4, world=2).threads == 2  # torchrun: 2 processes on 4 cores
    assert resolve_workers(None, torch.device("cuda"), "cpu", False, 16) == 8


def test_plan_sets_torch_threads(monkeypatch):
    monkeypatch.setattr(compute, "usable_cpus", lambda: 1)
    before = torch.get_num_threads()
    try:
        plan_compute(device=CPU, threads=None, workers=None, amp=False, amp_dtype="bfloat16", channels_last=True,
                     corrupt_on="auto", in_memory=True, world=1, probe=_no_probe)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bf16, fp32, expected", [(200.0, 100.0, "bfloat16"), (105.0, 100.0, "float32")])
def test_auto_precision_takes_bf16_only_when_the_probe_measures_it_faster(monkeypatch, bf16, fp32, expected):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    precision, rates = choose_precision(None, "bfloat16", CPU, lambda d: {"float32": fp32, "bfloat16": bf16})
    assert precision == expected and rates == {"float32": fp32, "bfloat16": bf16}


def test_auto_precision_without_native_bf16_or_on_cuda_is_float32_unprobed(monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: False)
    assert choose_precision(None, "bfloat16", CPU, _no_probe) == ("float32", {})
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    assert choose_precision(None, "bfloat16", torch.device("cuda"), _no_probe) == ("float32", {})


def test_explicit_amp_is_obeyed_without_probing():
    assert choose_precision(False, "bfloat16", CPU, _no_probe) == ("float32", {})
    assert choose_precision(True, "bfloat16", CPU, _no_probe) == ("bfloat16", {})


def test_a_resumed_run_keeps_its_recorded_precision(monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    saved = {"precision": "float32", "probe": {"float32": 1.0, "bfloat16": 2.0}}
    plan = _plan(monkeypatch, amp=None, saved=saved)
    assert plan.precision == "float32" and plan.probe == saved["probe"]


def test_probe_leaves_the_model_and_the_global_rng_untouched():
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", num_classes=10, codebook_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.rand(8, 3, 32, 32)
    rng = torch.get_rng_state()

    def step(m, x):
        out = m(x, return_aux=True)
        return F.cross_entropy(out.logits.float(), torch.zeros(len(x), dtype=torch.long)) + out.aux_loss

    rates = probe_step_rates(model, step, batch, ("float32", "bfloat16"), repeats=1)
    assert set(rates) == {"float32", "bfloat16"} and all(r > 0 for r in rates.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_plan_description_names_every_choice():
    plan = ComputePlan("cpu", 2, 0, "bfloat16", True, "device", {"float32": 500.0, "bfloat16": 900.0})
    text = plan.describe()
    for part in ("2 thread", "0 DataLoader worker", "bfloat16 autocast", "float32 500", "channels_last", "batched"):
        assert part in text
    assert plan.autocast_dtype is torch.bfloat16


def test_config_defaults_are_auto_and_validated():
    cfg = load_config(None, {})
    assert cfg.amp is None and cfg.threads is None and cfg.data.workers is None
    assert cfg.corruption.corrupt_on == "auto"
    assert parse_overrides(["--amp"]) == {"amp": True}
    assert load_config(None, ["--amp", "false"]).amp is False
    for bad in ({"threads": 0}, {"data.workers": -1}, {"corruption.corrupt_on": "gpu"}):
        with pytest.raises(ValueError, match=next(iter(bad)).split(".")[-1]):
            load_config(None, bad)


def test_trainer_records_its_plan_and_trains_in_it(tmp_path, monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(compute, "BF16_MIN_SPEEDUP", 0.0)  # whatever the probe measures, bf16 is taken
    cfg = load_config(None, {
        "output_dir": str(tmp_path), "name": "r", "epochs": 1, "batch_size": 32, "data.dataset": "digits",
        "data.train_subset": 64, "data.val_subset": 32, "model.name": "cifar_resnet8", "model.codebook_size": 8,
        "corruption.corruptions": ["gaussian_noise", "contrast"], "eval.enabled": False,
    })
    trainer = Trainer(cfg)
    assert trainer.plan.precision == "bfloat16" and trainer.plan.workers == 0 and trainer.plan.corrupt_on == "device"
    assert set(trainer.plan.probe) == {"float32", "bfloat16"}
    trainer.fit()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["compute"]["precision"] == "bfloat16" and summary["compute"]["workers"] == 0
    ckpt = torch.load(tmp_path / "r" / "checkpoint_last.pt", weights_only=True)
    assert ckpt["compute"]["precision"] == "bfloat16"


def test_the_pretraining_recipe_runs_end_to_end_on_a_small_budget(tmp_path):
    from pathlib import Path

    from vqsa.cli.main import main

    config = Path(__file__).resolve().parents[2] / "configs" / "cifar10_pretrain.yaml"
    assert main(["train", "-c", str(config), "--output_dir", str(tmp_path), "--data.dataset", "digits",
                 "--data.train_subset", "128", "--data.val_subset", "64", "--epochs", "2", "--batch_size", "64",
                 "--optim.warmup_epochs", "1"]) == 0
    summary = json.loads((tmp_path / "cifar10_pretrain" / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["val_acc"] <= 1 and summary["compute"]["workers"] == 0
    assert summary["config"]["optim"]["nesterov"] and summary["config"]["data"]["crop_padding"] == 2


def test_probe_results_persist_per_machine_so_fresh_runs_agree(tmp_path, monkeypatch, caplog):
    """A second process (here: an emptied in-process memo) reads the first one's probe instead of timing again; an
    unreadable cache is measured anew, and VQSA_CACHE_DIR="" stores nothing."""
    from vqsa.train import compute

    monkeypatch.setenv("VQSA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compute, "_PROBE_CACHE", {})
    calls = []

    def probe(rates):
        return lambda dtypes: calls.append(rates) or {d: rates[d] for d in dtypes}

    key = ("model", (8, 3, 32, 32), "cpu", True)
    first = compute.cached_probe(key, probe({"float32": 100.0, "bfloat16": 150.0}))(("float32", "bfloat16"))
    compute._PROBE_CACHE.clear()
    with caplog.at_level("INFO", logger="vqsa"):
        again = compute.cached_probe(key, probe({"float32": 100.0, "bfloat16": 90.0}))(("float32", "bfloat16"))
    assert again == first and len(calls) == 1 and "read from" in caplog.text
    other = compute.cached_probe(("other", *key[1:]), probe({"float32": 1.0, "bfloat16": 2.0}))(("float32",))
    assert other == {"float32": 1.0} and len(calls) == 2

    compute._PROBE_CACHE.clear()
    compute.probe_cache_file().write_text("{not json")
    with caplog.at_level("WARNING", logger="vqsa"):
        compute.cached_probe(key, probe({"float32": 1.0, "bfloat16": 1.0}))(("float32", "bfloat16"))
    assert len(calls) == 3 and "unreadable precision-probe cache" in caplog.text

    monkeypatch.setenv("VQSA_CACHE_DIR", "")
    compute._PROBE_CACHE.clear()
    assert compute.probe_cache_file() is None
    compute.cached_probe(key, probe({"float32": 1.0, "bfloat16": 1.0}))(("float32", "bfloat16"))
    assert len(calls) == 4
