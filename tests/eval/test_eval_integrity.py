"""Evaluation that survives bad files and interruptions: --skip-bad excludes and lists unreadable images, without it
one line names the file, and an interrupted evaluation resumes from its per-cell progress to identical counts."""
import json

import numpy as np
import pytest
import torch

import vqsa
from evalhelpers import write_cifar10, write_cifar10_c, write_imagenet_c
from vqsa.cli.main import main
from vqsa.eval.progress import clear_progress, progress_path


@pytest.fixture()
def imagenet_c(tmp_path):
    root = tmp_path / "data"
    write_imagenet_c(root / "imagenet-c", ["fog", "snow"], [1, 3], per_class=2)
    bad = sorted((root / "imagenet-c" / "snow" / "3").rglob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated file, as an interrupted copy leaves it
    return root, bad


@pytest.fixture()
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    vqsa.save_model(vqsa.create_model("cifar_resnet8", num_classes=1000, vq=False), path)
    return path


def _evaluate(root, model_file, out, *extra):
    return main(["evaluate", "--checkpoint", str(model_file), "--dataset", "imagenet-c", "--data-root", str(root),
                 "--no-clean", "--corruptions", "fog", "snow", "--severities", "1", "3", "--workers", "0",
                 "--batch-size", "3", "--no-progress", "--out", str(out), *extra])


def test_an_unreadable_image_is_one_line_naming_it_or_skipped_and_listed(imagenet_c, model_file, tmp_path, capsys):
    root, bad = imagenet_c
    assert _evaluate(root, model_file, tmp_path / "strict") == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "--skip-bad" in lines[0]

    assert _evaluate(root, model_file, tmp_path / "skip", "--skip-bad") == 0
    assert f"skipped: cannot decode image {bad}" in capsys.readouterr().err
    d = json.loads((tmp_path / "skip" / "results.json").read_text())
    assert d["data"]["excluded"]["images"] == 1 and d["data"]["excluded"]["per_cell"] == {"snow/3": 1}
    assert str(bad) in d["data"]["excluded"]["files"][0]
    totals = {(c["corruption"], c["severity"]): c["total"] for c in d["table"]}
    assert totals[("snow", 3)] == 3 and totals[("fog", 1)] == 4
    assert any("unreadable image(s) excluded" in n for n in d["notes"])
    assert not list((tmp_path / "skip").glob("eval_progress*"))  # a finished evaluation leaves no progress


def test_a_stopped_evaluation_resumes_from_its_last_cell_to_the_same_counts(imagenet_c, model_file, tmp_path):
    """The strict run stops at the bad file of the last cell; its saved progress covers the cells before it, and
    --resume --skip-bad finishes to the counts of a run that skipped from the start."""
    root, bad = imagenet_c
    _evaluate(root, model_file, tmp_path / "ref", "--skip-bad")
    assert _evaluate(root, model_file, tmp_path / "run") == 1
    saved = json.loads(progress_path(tmp_path / "run", 0, 1).read_text())
    assert 0 < saved["position"] < 16 and sum(saved["total"]) == saved["position"]
    assert _evaluate(root, model_file, tmp_path / "run", "--skip-bad", "--resume") == 0
    ref, run = (json.loads((tmp_path / d / "results.json").read_text())["table"] for d in ("ref", "run"))
    assert ref == run


def test_resume_refuses_progress_of_another_evaluation(imagenet_c, model_file, tmp_path, capsys):
    root, bad = imagenet_c
    assert _evaluate(root, model_file, tmp_path / "run") == 1
    capsys.readouterr()
    assert _evaluate(root, model_file, tmp_path / "run", "--skip-bad", "--resume", "--batch-size", "4") == 1
    err = capsys.readouterr().err
    assert str(progress_path(tmp_path / "run", 0, 1)) in err and "another evaluation" in err


def test_interrupted_in_memory_evaluation_resumes_bit_identically(tmp_path):
    """Interrupt a CIFAR-10-C evaluation in its third cell, resume: the same counts as an uninterrupted run."""
    root = tmp_path / "data"
    labels = write_cifar10(root, n=12)
    write_cifar10_c(root / "cifar10-c", ["fog", "contrast"], n=12, clean_labels=labels)
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_resnet8", num_classes=10, vq=False).eval()
    kw = dict(data_root=root, corruptions=["fog", "contrast"], severities=[1, 2], batch_size=5, num_workers=0,
              progress=False)
    ref = vqsa.evaluate(model, "cifar10-c", **kw)
    flaky = Interrupted(model, at=8)  # the label-space probe, then 7 batches: into the third of the 5 cells
    with pytest.raises(KeyboardInterrupt):
        vqsa.evaluate(flaky, "cifar10-c", checkpoint_dir=tmp_path / "ck", **kw)
    saved = json.loads(progress_path(tmp_path / "ck", 0, 1).read_text())
    assert 12 <= saved["position"] < 36
    with pytest.raises(ValueError, match="needs an nn.Module"):  # a bare callable's weights cannot be matched
        vqsa.evaluate(flaky.forward, "cifar10-c", checkpoint_dir=tmp_path / "ck", resume=True, **kw)
    flaky.armed = False
    resumed = vqsa.evaluate(flaky, "cifar10-c", checkpoint_dir=tmp_path / "ck", resume=True, **kw)
    assert [dataclass_tuple(c) for c in resumed.cells] == [dataclass_tuple(c) for c in ref.cells]
    assert dataclass_tuple(resumed.clean) == dataclass_tuple(ref.clean)
    # the complete progress stays until the caller has saved the results: resuming again returns them at once
    again = vqsa.evaluate(flaky, "cifar10-c", checkpoint_dir=tmp_path / "ck", resume=True, **kw)
    assert [dataclass_tuple(c) for c in again.cells] == [dataclass_tuple(c) for c in ref.cells]
    clear_progress(tmp_path / "ck")
    assert not progress_path(tmp_path / "ck", 0, 1).exists()
    with pytest.raises(ValueError, match="needs the checkpoint_dir"):
        vqsa.evaluate(model, "cifar10-c", resume=True, **kw)
    with pytest.raises(ValueError, match="another evaluation"):  # other weights
        vqsa.evaluate(flaky, "cifar10-c", checkpoint_dir=tmp_path / "ck", **kw)
        vqsa.evaluate(model, "cifar10-c", checkpoint_dir=tmp_path / "ck", resume=True, **kw)


def test_progress_with_excluded_images_resumes_only_with_skip_bad(tmp_path, model_file):
    root = tmp_path / "data"
    write_imagenet_c(root / "imagenet-c", ["fog", "snow"], [1], per_class=2)
    bad = sorted((root / "imagenet-c" / "fog" / "1").rglob("*.png"))[0]
    bad.write_bytes(b"not an image")
    model = Interrupted(vqsa.load_model(model_file), at=4)  # the probe, fog/1 in 2 batches, then snow/1
    kw = dict(data_root=root, corruptions=["fog", "snow"], severities=[1], clean=False, batch_size=2,
              num_workers=0, progress=False, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(KeyboardInterrupt):
        vqsa.evaluate(model, "imagenet-c", skip_bad=True, **kw)
    model.armed = False
    with pytest.raises(ValueError, match="excluded 1 unreadable image.*resume with --skip-bad"):
        vqsa.evaluate(model, "imagenet-c", resume=True, **kw)
    res = vqsa.evaluate(model, "imagenet-c", resume=True, skip_bad=True, **kw)
    assert res.data["excluded"]["per_cell"] == {"fog/1": 1} and [c.total for c in res.cells] == [3, 4]


class Interrupted(torch.nn.Module):
    """``model``, interrupted (KeyboardInterrupt) at its ``at``-th call while ``armed``."""

    def __init__(self, model, at):
        super().__init__()
        self.model, self.at, self.calls, self.armed = model, at, 0, True

    def forward(self, x):
        self.calls += 1
        if self.armed and self.calls == self.at:
            raise KeyboardInterrupt
        return self.model(x)


def dataclass_tuple(c):
    return (c.corruption, c.severity, c.correct, c.total)


def test_no_readable_image_in_a_cell_is_an_error(tmp_path, model_file):
    root = tmp_path / "data"
    write_imagenet_c(root / "imagenet-c", ["fog"], [1], per_class=1)
    for f in (root / "imagenet-c").rglob("*.png"):
        f.write_bytes(b"not an image")
    model = vqsa.load_model(model_file)
    with pytest.raises(ValueError, match="no readable image in cell"):
        vqsa.evaluate(model, "imagenet-c", data_root=root, corruptions=["fog"], severities=[1], clean=False,
                      num_workers=0, progress=False, skip_bad=True)
    np.testing.assert_equal(len(list((root / "imagenet-c").rglob("*.png"))), 2)
