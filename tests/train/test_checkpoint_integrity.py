"""Damaged checkpoints: refused by their CRC-32s, and a resume falls back to the checkpoint before the last one."""
from __future__ import annotations

import logging

import pytest

from vqsa.cli.main import main
from vqsa.train.checkpointing import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    CheckpointDamagedError,
    load_training_checkpoint,
)
from vqsa.train.engine import Trainer

from .test_engine import _assert_same_run, _cfg


def _flip(path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def test_each_save_keeps_the_checkpoint_before(tmp_path):
    Trainer(_cfg(tmp_path, "run", 2)).fit()
    last = load_training_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    prev = load_training_checkpoint(tmp_path / "run" / PREVIOUS_NAME)
    assert (prev["epoch"], last["epoch"]) == (1, 2)


def test_flipped_bytes_are_refused_naming_the_file(tmp_path):
    Trainer(_cfg(tmp_path, "run", 1)).fit()
    path = tmp_path / "run" / CHECKPOINT_NAME
    _flip(path)
    with pytest.raises(CheckpointDamagedError, match=f"{path}: damaged checkpoint.*CRC-32"):
        load_training_checkpoint(path)


def test_resume_from_a_damaged_last_checkpoint_continues_from_the_one_before(tmp_path, caplog):
    Trainer(_cfg(tmp_path, "ref", 3)).fit()
    victim = Trainer(_cfg(tmp_path, "victim", 3))
    original = victim.train_one_epoch

    def two_epochs_then_die():
        if victim.epoch == 2:
            raise KeyboardInterrupt
        return original()

    victim.train_one_epoch = two_epochs_then_die
    with pytest.raises(KeyboardInterrupt):
        victim.fit()
    _flip(tmp_path / "victim" / CHECKPOINT_NAME)
    with caplog.at_level(logging.WARNING, logger="vqsa"):
        Trainer(_cfg(tmp_path, "victim", 3), resume=True).fit()
    err = caplog.text
    assert "damaged checkpoint" in err and f"resuming from the checkpoint before it, {tmp_path / 'victim'}" in err
    _assert_same_run(tmp_path / "ref", tmp_path / "victim")


def test_cli_resume_without_a_good_checkpoint_fails_in_one_line(tmp_path, capsys):
    Trainer(_cfg(tmp_path, "run", 1)).fit()
    _flip(tmp_path / "run" / CHECKPOINT_NAME)
    (tmp_path / "run" / PREVIOUS_NAME).unlink(missing_ok=True)  # a one-epoch run has no checkpoint before its last
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "damaged checkpoint" in lines[0] and CHECKPOINT_NAME in lines[0]


@pytest.mark.parametrize("content", [b"\x95\x00\xff binary", b"- a\n- list\n", b"key: [unclosed"])
def test_evaluate_uses_the_checkpoints_config_when_config_yaml_is_unreadable(tmp_path, content):
    from vqsa.eval.model import load_for_eval

    Trainer(_cfg(tmp_path, "run", 1)).fit()
    (tmp_path / "run" / "config.yaml").write_bytes(content)
    with pytest.warns(UserWarning, match="config.yaml: unreadable .*config stored in the checkpoint"):
        _, _, corruptions = load_for_eval(tmp_path / "run")
    assert corruptions == ["gaussian_noise", "impulse_noise", "contrast", "pixelate"]


def test_a_full_disk_is_named_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import torch

    from vqsa.utils.io import atomic_torch_save

    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.zeros(2)}, path)
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 12")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=f"no space left on the device to write {path}") as info:
        atomic_torch_save({"a": torch.ones(2)}, path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
