"""End-to-end training runs on scikit-learn's digits (real, offline) with the small CIFAR ResNet-8."""
import dataclasses
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vqsa.cli.main import main
from vqsa.train.checkpointing import load_training_checkpoint
from vqsa.train.config import load_config
from vqsa.train.engine import NonFiniteLossError, Trainer, train

FAST = "[gaussian_noise, impulse_noise, contrast, pixelate]"  # cheap at 32 px


def tiny_args(out: Path, name: str, epochs: int = 2, **extra: str) -> list[str]:
    args = {
        "output_dir": str(out), "name": name, "epochs": str(epochs), "batch_size": "32", "data.dataset": "digits",
        "data.train_subset": "96", "data.val_subset": "32", "data.workers": "0", "model.name": "cifar_resnet8",
        "model.codebook_size": "32", "corruption.corruptions": FAST, "eval.corruptions": "[gaussian_noise, saturate]",
        "eval.severities": "[2]", "eval.batch_size": "32", "log_every": "2",
        # fixed precision: the auto choice times the model, and runs compared bit for bit must not differ in it
        "amp": "false",
    }
    args.update(extra)
    return [tok for k, v in args.items() for tok in (f"--{k}", v)]


def test_tiny_run_writes_its_files_and_warns_about_overlap(tmp_path, capsys):
    tensorboard = importlib.util.find_spec("tensorboard") is not None  # optional dependency
    with pytest.warns(UserWarning, match="also evaluation corruptions"):
        assert main(["train", *tiny_args(tmp_path, "run", 2), *(["--tensorboard"] if tensorboard else [])]) == 0
    run = tmp_path / "run"
    assert not tensorboard or any((run / "tensorboard").iterdir())
    for f in ("config.yaml", "checkpoint_last.pt", "model.safetensors", "metrics.jsonl", "metrics.csv",
              "results.json", "summary.json"):
        assert (run / f).is_file(), f
    assert load_config(run / "config.yaml").model.codebook_size == 32
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[-1]["step"] == 6 and lines[0]["train_images"] == 96
    assert 0 <= lines[-1]["val_acc"] <= 1 and 0 < lines[-1]["codebook_used"] <= 1
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_corruptions"] == ["gaussian_noise", "impulse_noise", "contrast", "pixelate"]
    assert summary["eval_corruptions_known"] == ["gaussian_noise"]
    assert summary["eval_corruptions_unknown"] == ["saturate"]
    results = json.loads((run / "results.json").read_text())
    assert results["train_corruptions"] == summary["train_corruptions"]
    # the evaluation records indices into the whole test split, so `vqsa evaluate --indices-from` repeats it
    from vqsa.eval import evaluate
    from vqsa.models import load_model
    from vqsa.train.inputs import load_digits

    split = load_digits("test")
    assert results["data"]["examples"]["indices"] == split.subset_indices(32, 0).tolist()
    assert results["model"]["label"] == "run"
    again = evaluate(load_model(run / "model.safetensors"), split, corruptions=["gaussian_noise", "saturate"],
                     severities=[2], indices=run / "results.json", seed=0, num_workers=0, progress=False)
    assert again.to_dict()["table"] == results["table"] and again.to_dict()["clean"] == results["clean"]
    ckpt = load_training_checkpoint(run / "checkpoint_last.pt")  # weights_only=True
    assert ckpt["epoch"] == 2 and ckpt["model_config"]["codebook_size"] == 32
    assert isinstance(ckpt["rng"]["numpy"]["keys"], torch.Tensor)
    err = capsys.readouterr().err
    assert "effective batch size 32 x 1 process(es) = 32" in err and "summary:" in err
    assert f"evaluation: clean acc {results['summary']['clean_accuracy']:.2f} %" in err and "results.md" in err

    # a second fresh run into the same folder is refused and leaves everything in place
    before = (run / "checkpoint_last.pt").read_bytes()
    assert main(["train", *tiny_args(tmp_path, "run", 2)]) == 1
    assert "--resume" in capsys.readouterr().err and (run / "checkpoint_last.pt").read_bytes() == before
    # --resume with another architecture is refused, naming the difference; nothing is lost
    assert main(["train", "--resume", str(run), "--model.codebook_size", "16"]) == 1
    err = capsys.readouterr().err
    assert "another architecture" in err and "codebook_size: checkpoint 32 vs config 16" in err
    assert (run / "checkpoint_last.pt").read_bytes() == before


def _cfg(tmp_path, name, epochs=2, **extra):
    return load_config(None, tiny_args(tmp_path, name, epochs, **{"eval.enabled": "false", **extra}))


@pytest.mark.parametrize("codebook", ["paper", "healthy"])
def test_mid_epoch_resume_is_bit_identical(tmp_path, codebook):
    """Interrupt inside epoch 2 right after a --save-every checkpoint, resume, compare with an uninterrupted run.
    The "healthy" codebook adds a k-means init from a data pass and seeded dead-code restarts every 2 steps."""
    extra = {"save_every": "2"}
    if codebook == "healthy":
        extra["model.kwargs"] = "{codebook_preset: healthy, init_samples: 64, dead_code_interval: 2}"
    ref = Trainer(_cfg(tmp_path, "ref", 3, **extra))
    ref.fit()
    assert codebook == "paper" or ref.logger.history[-1]["codebook_restarts"] > 0

    victim = Trainer(_cfg(tmp_path, "victim", 3, **extra))
    original_save = victim._save

    def save_then_die():
        original_save()
        if victim.step == 4:  # batch 1 of epoch 2
            raise KeyboardInterrupt

    victim._save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        victim.fit()
    ckpt = load_training_checkpoint(tmp_path / "victim" / "checkpoint_last.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 1, 4)
    with pytest.raises(ValueError, match="skip or repeat images"):  # mid-epoch: the batch size must not change
        Trainer(_cfg(tmp_path, "victim", 3, **extra, batch_size="16"), resume=True).fit()
    Trainer(_cfg(tmp_path, "victim", 3, **extra), resume=True).fit()
    _assert_same_run(tmp_path / "ref", tmp_path / "victim")


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and any("codebook" in k for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ca, cb = load_training_checkpoint(a / "checkpoint_last.pt"), load_training_checkpoint(b / "checkpoint_last.pt")
    for k in ca["optimizer"]["state"]:
        for name, t in ca["optimizer"]["state"][k].items():
            assert torch.equal(t, cb["optimizer"]["state"][k][name])
    timing = ("images_per_s", "epoch_time_s")
    ma, mb = ([{k: v for k, v in json.loads(x).items() if k not in timing}
               for x in (run / "metrics.jsonl").read_text().splitlines()] for run in (a, b))
    assert ma == mb and len(ma) == ca["epoch"]


def test_sigkill_after_an_epoch_checkpoint_then_resume_is_bit_identical(tmp_path, child_env):
    env = dict(child_env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "vqsa", "train"]
    epochs = 6
    ref = subprocess.Popen(cmd + tiny_args(tmp_path, "ref", epochs, **{"eval.enabled": "false"}), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(cmd + tiny_args(tmp_path, "victim", epochs, **{"eval.enabled": "false"}), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "victim" / "checkpoint_last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read().decode()[-2000:]
    killed_at = load_training_checkpoint(ckpt)["epoch"]
    assert 1 <= killed_at < epochs
    assert not (tmp_path / "victim" / "model.safetensors").exists()
    resumed = subprocess.run(cmd + ["--resume", str(tmp_path / "victim")], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {killed_at}" in resumed.stderr
    assert ref.wait(timeout=120) == 0
    _assert_same_run(tmp_path / "ref", tmp_path / "victim")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    trainer = Trainer(_cfg(tmp_path, "nan", 3))
    inner = trainer.ddp_model

    class Poisoned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x, return_aux=False):
            out = self.inner(x, return_aux=return_aux)
            if trainer.epoch >= 1:  # the second epoch diverges
                out = dataclasses.replace(out, aux_loss=out.aux_loss * float("nan"))
            return out

    trainer.ddp_model = Poisoned()
    capsys.readouterr()
    with pytest.raises(NonFiniteLossError, match="NaN/Inf in epoch 2.*last good checkpoint"):
        trainer.fit()
    err = capsys.readouterr().err
    assert "epoch 2/3" in err and err.endswith("\n"), repr(err[-300:])  # the bar ends its line before the stop message
    run = tmp_path / "nan"
    ckpt = load_training_checkpoint(run / "checkpoint_last.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "model.safetensors").exists()


def test_bad_inputs_give_clear_messages(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VQSA_DATA", raising=False)
    base = tiny_args(tmp_path, "bad", 1, **{"eval.enabled": "false"})
    assert main(["train", *base, "--data.dataset", "cifar10", "--data-root", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", *base, "--data.dataset", "cifar10"]) == 1
    assert "--data-root" in capsys.readouterr().err
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    assert main(["train", *base, "--data.dataset", "imagefolder", "--data-root", str(tmp_path / "empty")]) == 1
    assert "no class folders" in capsys.readouterr().err
    assert main(["train", *base, "--corruption.corruptions", "[gaussian_noise, fogg]"]) == 1
    assert "unknown corruption or subset 'fogg'" in capsys.readouterr().err

    # an ImageFolder tree with one undecodable file: named in the error; --skip-bad counts and skips it
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "img" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(
                    tmp_path / "img" / split / cls / f"{i}.png")
    (tmp_path / "img" / "train" / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    folder = [*base, "--data.dataset", "imagefolder", "--data-root", str(tmp_path / "img"), "--data.img_size", "32",
              "--batch_size", "4", "--data.train_subset", "null", "--data.val_subset", "null"]
    assert main(["train", *folder, "--name", "strict"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "epoch 1/1" in err  # the progress bar was drawn ...
    assert "\nvqsa train: error: " in err, repr(err[-400:])  # ... and the error starts a line of its own
    assert main(["train", *folder, "--name", "skip", "--skip-bad"]) == 0
    record = json.loads((tmp_path / "skip" / "metrics.jsonl").read_text())
    assert record["bad_images"] == 1 and record["train_images"] == 6


def test_pairs_with_device_side_corruption(tmp_path):
    """--corruption.pairs puts the clean and the corrupted view of each image in the batch; --corrupt-on device
    applies the same per-sample draw with the batched engine after the batch is moved."""
    cfg = _cfg(tmp_path, "pairs", 1, **{"corruption.pairs": "true", "corrupt_on": "device"})
    summary = Trainer(cfg).fit()
    record = json.loads((tmp_path / "pairs" / "metrics.jsonl").read_text())
    assert record["train_images"] == 2 * 96 and summary["steps"] == 3


@pytest.mark.data
def test_cifar10_from_the_data_root(tmp_path, cifar10_root):
    args = tiny_args(tmp_path, "cifar", 1, **{"data.dataset": "cifar10", "data.root": str(cifar10_root),
                                               "eval.enabled": "false"})
    assert main(["train", *args]) == 0
    record = json.loads((tmp_path / "cifar" / "metrics.jsonl").read_text())
    assert record["train_images"] == 96 and "val_acc" in record


def test_resume_with_more_epochs_follows_the_new_schedule(tmp_path, capsys):
    """Extending a finished run: the extra epoch trains on the new cosine (not at the old curve's end, lr 0), the
    changes are logged, the old results.* are marked stale when no new evaluation replaces them, and resuming a run
    with nothing left to do says so without evaluating again."""
    args = tiny_args(tmp_path, "ext", 1, **{"eval.n_examples": "8", "eval.corruptions": "[contrast]"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", *args]) == 0
    run = tmp_path / "ext"
    before = load_training_checkpoint(run / "checkpoint_last.pt")
    results = (run / "results.json").read_bytes()
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "--epochs", "2", "--eval.enabled", "false", "--lr", "2e-3"]) == 0
    err = capsys.readouterr().err
    assert "resume: settings differ from the checkpoint's: epochs 1 -> 2, optim.lr 0.001 -> 0.002, eval.enabled true " \
           "-> false" in err
    # steps 3..5 of a 6-step cosine from 2e-3: the lr at the resumed step is 2e-3 * 0.5 * (1 + cos(pi / 2)) = 1e-3
    assert "schedule follows the current config (cosine to 0 over 2 epochs = 6 steps): lr 0.001 at step 3" in err
    after = load_training_checkpoint(run / "checkpoint_last.pt")
    assert (after["epoch"], after["step"]) == (2, 6)
    conv = "backbone.model.conv1.weight"
    assert not torch.equal(before["model"][conv], after["model"][conv])  # trained, not only BatchNorm statistics
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and history[-1]["lr"] == 0.0  # the new curve's end
    assert after["scheduler"]["lr_lambdas"][0]["total"] == 6 and after["config"]["epochs"] == 2
    assert not (run / "results.json").exists() and (run / "results.stale.json").read_bytes() == results
    assert "results.stale" in err
    summary = (run / "summary.json").read_text()
    assert json.loads(summary)["steps"] == 6

    # nothing left to do: said so, nothing re-run or rewritten
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "already finished its 2 epochs" in err and "nothing to do" in err and "summary:" not in err
    assert (run / "summary.json").read_text() == summary and not (run / "results.json").exists()
    # a run cannot be shortened
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 1
    assert "cannot be shortened (pass --epochs 2 or more)" in capsys.readouterr().err
    assert load_training_checkpoint(run / "checkpoint_last.pt")["step"] == 6


def test_a_copied_run_resumes_in_its_own_folder(tmp_path, capsys, monkeypatch):
    """``--resume DIR`` continues in DIR, not in the folder recorded in the checkpoint (a relative ``runs`` that
    pointed at another copy, or at nothing from another working directory); ``--name`` forks it elsewhere, but
    never onto another run's checkpoint."""
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    assert main(["train", *tiny_args(Path("runs"), "orig", 1, **{"eval.enabled": "false"})]) == 0
    shutil.copytree(first / "runs" / "orig", tmp_path / "archive" / "copy")
    original = (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "archive" / "copy"), "--epochs", "2"]) == 0
    assert "settings differ from the checkpoint's: epochs 1 -> 2\n" in capsys.readouterr().err  # no output_dir
    assert load_training_checkpoint(tmp_path / "archive" / "copy" / "checkpoint_last.pt")["epoch"] == 2
    assert (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes() == original
    assert not (elsewhere / "runs").exists()

    monkeypatch.chdir(first)
    assert main(["train", "--resume", "runs/orig", "--name", "fork", "--epochs", "2"]) == 0
    assert "resume: continuing runs/orig/checkpoint_last.pt in the run folder runs/fork" in capsys.readouterr().err
    assert load_training_checkpoint(first / "runs" / "fork" / "checkpoint_last.pt")["epoch"] == 2
    assert (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes() == original
    assert main(["train", "--resume", "runs/orig", "--name", "fork", "--epochs", "3"]) == 1
    assert "runs/fork already holds a training checkpoint" in capsys.readouterr().err
    # a config file that names a run folder forks there too (it used to, and must not write into the resumed run)
    (first / "b.yaml").write_text("name: from_config\noutput_dir: runs\nepochs: 2\n")
    assert main(["train", "-c", "b.yaml", "--resume", "runs/orig", *tiny_args(Path("runs"), "x", 2)[4:]]) == 0
    assert load_training_checkpoint(first / "runs" / "from_config" / "checkpoint_last.pt")["epoch"] == 2
    assert (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes() == original
    # the moved run's own config.yaml names its recorded folder: not a fork, the run continues where it now is
    shutil.move(tmp_path / "archive" / "copy", tmp_path / "moved")
    assert main(["train", "-c", str(tmp_path / "moved" / "config.yaml"), "--resume", str(tmp_path / "moved"),
                 "--epochs", "3"]) == 0
    assert load_training_checkpoint(tmp_path / "moved" / "checkpoint_last.pt")["epoch"] == 3
    assert (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes() == original
    # a plain resume keeps the recorded spelling of the folder, and -c compares folders, not strings
    (first / "x.yaml").write_text("name: exp\noutput_dir: runs\nepochs: 1\n")
    rest = tiny_args(Path("runs"), "x", 1)[6:]  # everything but the folder and the epochs
    assert main(["train", "-c", "x.yaml", *rest]) == 0
    assert main(["train", "--resume", "runs/exp", "--epochs", "2"]) == 0
    assert "output_dir: runs\n" in (first / "runs" / "exp" / "config.yaml").read_text()
    shutil.move(first / "runs" / "exp", tmp_path / "moved_exp")
    assert main(["train", "-c", "x.yaml", *rest, "--resume", str(tmp_path / "moved_exp"), "--epochs", "3"]) == 0
    assert load_training_checkpoint(tmp_path / "moved_exp" / "checkpoint_last.pt")["epoch"] == 3
    # the Python API takes a run folder as well as a checkpoint file
    train(_cfg(Path("runs"), "api", 3), resume=Path("runs/orig"))
    assert load_training_checkpoint(first / "runs" / "api" / "checkpoint_last.pt")["epoch"] == 3
    assert (first / "runs" / "orig" / "checkpoint_last.pt").read_bytes() == original


def test_pretrained_weights_file_starts_the_run_and_is_not_needed_to_resume(tmp_path):
    """``model.pretrained: FILE`` (offline weights) seeds the backbone; a resume takes the checkpoint's weights and
    must not need the file again."""
    from vqsa.models._registry import vqsa_backbone

    torch.manual_seed(3)
    net = vqsa_backbone("cifar_resnet8")(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    args = tiny_args(tmp_path, "pre", 1, **{"eval.enabled": "false", "model.pretrained": str(tmp_path / "net.pth")})
    cfg = load_config(None, args)
    assert cfg.model.pretrained == str(tmp_path / "net.pth")
    with pytest.raises(FileNotFoundError, match="model.pretrained: no weights file at"):
        Trainer(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=str(tmp_path / "no.pth"))))
    trainer = Trainer(cfg)
    assert torch.equal(trainer.model.backbone.model.conv1.weight, net.conv1.weight)  # loaded, not yet trained
    trainer.fit()
    (tmp_path / "net.pth").unlink()
    assert main(["train", "--resume", str(tmp_path / "pre"), "--epochs", "2"]) == 0
    assert load_training_checkpoint(tmp_path / "pre" / "checkpoint_last.pt")["epoch"] == 2


def test_model_outputs_are_checked_against_the_classes_before_training(tmp_path, capsys):
    """Fewer outputs than classes failed with an IndexError traceback on the first batch holding a large label."""
    assert main(["train", *tiny_args(tmp_path, "few", 1, **{"model.num_classes": "5"})]) == 1
    assert "the model has 5 outputs but the dataset has 10 classes; set model.num_classes to 10 or null" in \
        capsys.readouterr().err
    assert not (tmp_path / "few" / "checkpoint_last.pt").exists()
    with pytest.warns(UserWarning, match="outputs 10..11 are never a target"):
        Trainer(_cfg(tmp_path, "many", 1, **{"model.num_classes": "12"}))


def test_amp_on_the_cpu_trains_under_bf16_autocast(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "amp", 1, amp="true", device="cpu"))
    assert trainer.plan.precision == "bfloat16" and trainer.plan.probe == {}  # asked for: no probe
    seen = []
    original = trainer.model.forward_head

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(*args, **kwargs)

    trainer.model.forward_head = spy
    trainer.fit()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)


def test_a_run_from_before_no_weight_decay_was_honoured_resumes(tmp_path, monkeypatch, capsys):
    """A ViT backbone's position embedding moved to the undecayed group; a run started with the old groups keeps
    them on resume instead of failing on the optimizer state."""
    import vqsa.train.optim as optim

    new_rule = optim.split_decay
    monkeypatch.setattr(optim, "split_decay", lambda model, named=True: new_rule(model, named=False))  # old code
    vit = {"model.name": "vit_tiny_patch16_224", "model.kwargs": "{img_size: 32, depth: 1}", "optim.name": "adamw",
           "optim.weight_decay": "0.05", "eval.enabled": "false"}
    assert main(["train", *tiny_args(tmp_path, "vit", 1, **vit)]) == 0
    monkeypatch.setattr(optim, "split_decay", new_rule)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "vit"), "--epochs", "2"]) == 0
    assert "keeping the checkpoint's weight-decay groups" in capsys.readouterr().err
    assert load_training_checkpoint(tmp_path / "vit" / "checkpoint_last.pt")["epoch"] == 2


def test_a_frozen_backbone_keeps_its_weights_and_running_statistics(tmp_path):
    """optim.backbone_lr_scale 0: the backbone is a fixed feature extractor (weights and norm statistics, through
    validation too); the head and the codebook train."""
    cfg = _cfg(tmp_path, "frozen", 2, **{"optim.backbone_lr_scale": "0", "data.val_subset": "32"})
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    body = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in body)
    assert all(torch.equal(before[k], after[k]) for k in body)
    head = [k for k in before if k.startswith(("fc.", "fc_fuse.", "attn.", "vq.codebook"))]
    assert head and all(not torch.equal(before[k], after[k]) for k in head if before[k].is_floating_point())


def test_a_scaled_backbone_learning_rate_follows_the_schedule_and_resumes(tmp_path):
    """optim.backbone_lr_scale 0.1: the backbone's groups run at a tenth of the head's lr at every step, resumed or
    not (the schedule is rebuilt from the config)."""
    cfg = _cfg(tmp_path, "scaled", 2, **{"optim.backbone_lr_scale": "0.1", "optim.name": "sgd", "optim.lr": "0.05"})
    trainer = Trainer(cfg)
    trainer.fit()
    body = {id(p) for p in trainer.model.backbone.parameters()}
    lrs = {any(id(p) in body for p in g["params"]): g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs[True] == pytest.approx(0.1 * lrs[False])
    resumed = Trainer(_cfg(tmp_path, "scaled", 3, **{"optim.backbone_lr_scale": "0.1", "optim.name": "sgd",
                                                      "optim.lr": "0.05"}), resume=True)
    assert [g["initial_lr"] for g in resumed.optimizer.param_groups] == pytest.approx([0.05, 0.005, 0.05, 0.005])
    with pytest.raises(ValueError, match=r"optim.backbone_lr_scale 0.1 -> 1 changes which parameters"):
        Trainer(_cfg(tmp_path, "scaled", 3, **{"optim.name": "sgd", "optim.lr": "0.05"}), resume=True)
    with pytest.raises(ValueError, match="optim.backbone_lr_scale.*>= 0"):
        load_config(None, tiny_args(tmp_path, "bad", **{"optim.backbone_lr_scale": "-1"}))
