"""Files that are not vqsa checkpoints: one clear line from `vqsa train --resume`, `vqsa info`, `vqsa evaluate`."""
import argparse

import pytest
import torch

from vqsa.cli.main import main


def _one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"vqsa {command}: error: "), err
    assert "weights_only=False" not in err and "Re-running" not in err and "weights_only` set to" not in err, err
    return lines[0]


@pytest.mark.parametrize("content", [b"garbage\n", b"", b"PK\x03\x04 truncated zip"])
def test_garbage_file_is_named_without_torch_paragraph(tmp_path, capsys, content):
    bad = tmp_path / "g.pt"
    bad.write_bytes(content)
    for command, argv in [("train", ["train", "--resume", str(bad)]), ("info", ["info", str(bad)]),
                          ("evaluate", ["evaluate", "--checkpoint", str(bad), "--dataset", "cifar10-c"])]:
        assert main(argv) == 1, command
        line = _one_line_error(capsys.readouterr().err, command)
        assert f"{bad}: not a vqsa/torch checkpoint, or a truncated/corrupt file" in line, line


def test_pickled_python_objects_are_named_and_not_unpickled(tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "model": {}}, path)
    assert main(["train", "--resume", str(path)]) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "it holds Python objects (argparse.Namespace)" in line and "weights_only=True" in line
    assert main(["info", str(path)]) == 1
    assert "argparse.Namespace" in _one_line_error(capsys.readouterr().err, "info")


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_named_as_such_and_never_run(tmp_path, capsys):
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"model": _RunsCode(str(marker))}, path)
    for command, argv in [("train", ["train", "--resume", str(path)]), ("info", ["info", str(path)])]:
        assert main(argv) == 1
        line = _one_line_error(capsys.readouterr().err, command)
        assert "it holds Python objects (posix.system)" in line or "(nt.system)" in line, line
    assert not marker.exists()


def test_resume_from_a_weights_file_points_to_the_run_folder(tmp_path, capsys):
    from vqsa.models import create_model, save_model

    run = tmp_path / "run"
    weights = save_model(create_model("cifar_resnet8", 10, codebook_size=8), run / "model.safetensors")
    assert main(["train", "--resume", str(weights)]) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "a weights file" in line and "checkpoint_last.pt" in line and "bn1" not in line
    state = tmp_path / "state.pt"
    torch.save(create_model("cifar_resnet8", 10, vq=False).state_dict(), state)
    assert main(["train", "--resume", str(state)]) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "a state dict" in line and "checkpoint_last.pt" in line and "bn1" not in line
    torch.save({"epoch": 3, "model": {}}, state)
    assert main(["train", "--resume", str(state)]) == 1
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "not a vqsa training checkpoint (it lacks ['model_config', 'optimizer'" in line
