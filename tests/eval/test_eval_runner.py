"""vqsa.evaluate end to end on tiny in-memory and released-layout sets with a classifier of known answers."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import vqsa
from evalhelpers import PixelOracle, write_cifar10, write_cifar10_c, write_imagenet_c
from vqsa.data import ArrayDataset
from vqsa.eval import CellCount, EvalResults, compare, with_normalization
from vqsa.metrics import KNOWN_CORRUPTIONS

RESNET50_ACC = [29.29, 27.03, 23.81, 38.75, 26.79, 38.67, 36.24, 32.53, 38.14, 45.83, 68.02, 39.06, 45.25, 44.79,
                53.41]


def test_exact_counts_on_released_cifar10_c(tmp_path):
    labels = write_cifar10(tmp_path, n=10)
    write_cifar10_c(tmp_path / "CIFAR-10-C", ["fog", "speckle_noise"], n=7, clean_labels=labels)
    res = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog", "speckle_noise"], [1, 2], batch_size=3,
                        num_workers=0, progress=False)
    assert res.clean == CellCount("clean", 0, 7, 7)  # the 7 clean images of the rows, each carrying its label
    # rows are right iff their index in the 5n array is even: severity 1 rows 0..6 -> 4 of 7, severity 2 rows 7..13 -> 3
    assert [(c.corruption, c.severity, c.correct, c.total) for c in res.cells] == [
        ("fog", 1, 4, 7), ("fog", 2, 3, 7), ("speckle_noise", 1, 4, 7), ("speckle_noise", 2, 3, 7)]
    assert res.baseline is None and res.mce is None and "no AlexNet baseline" in res.metric_notes()["mce"]
    assert res.mean_error == pytest.approx(100 * (1 - 7 / 14))  # fog only: the common one
    assert res.unknown_accuracy == pytest.approx(50.0) and res.source.startswith("released files in")


def test_imagenet_c_mce_null_when_incomplete_and_label_space(tmp_path):
    write_imagenet_c(tmp_path / "imagenet-c", ["fog"], [1, 2], class_ids=(5, 990))
    res = vqsa.evaluate(PixelOracle(1000), "imagenet-c", tmp_path, ["fog"], [1, 2], num_workers=0, progress=False)
    assert [c.correct for c in res.cells] == [2, 2] and [c.total for c in res.cells] == [4, 4]  # class 5 right only
    assert res.mce is None and "15 common corruptions" in res.metric_notes()["mce"]
    assert res.clean is None and res.relative_mce is None
    with pytest.raises(ValueError, match="label-space mismatch: the model outputs 10 classes .* 1000"):
        vqsa.evaluate(PixelOracle(10), "imagenet-c", tmp_path, ["fog"], [1], num_workers=0, progress=False)


def test_mce_from_counts_reproduces_published_resnet50():
    cells = [CellCount(c, s, round(acc * 100), 10000) for c, acc in zip(KNOWN_CORRUPTIONS, RESNET50_ACC)
             for s in range(1, 6)]
    res = EvalResults("imagenet-c", "hand-made", "alexnet", CellCount("clean", 0, 7613, 10000), cells)
    assert res.mce == pytest.approx(76.70, abs=0.005)
    assert res.ce()["glass_blur"] == pytest.approx(88.61, abs=0.01)
    assert res.known_accuracy == pytest.approx(39.17, abs=0.005) and res.unknown_accuracy is None
    assert res.relative_mce == pytest.approx(105.0, abs=0.1)
    assert res.metric_notes() == {}


def test_limit_overlap_and_files(tmp_path):
    pytest.importorskip("vqsa.corruptions").corrupt
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 30)
    images[:, 0, 0, 0] = labels
    ds = ArrayDataset(images, labels, tuple("abcdefghij"), "rand")
    with pytest.warns(UserWarning, match="trained on 1 of the evaluated corruptions .*contrast"):
        res = vqsa.evaluate(PixelOracle(10), ds, corruptions=["contrast", "speckle_noise"], severities=[2],
                            profile="cifar", seed=0, batch_size=8, num_workers=0, limit=11, progress=False,
                            train_corruptions=["contrast", "fog"])
    assert res.clean.correct == res.clean.total == 11 and all(c.total == 11 for c in res.cells)
    assert res.overlap == ["contrast"] and res.source == "on-the-fly, seed 0, profile cifar"
    assert res.seen_accuracy == res.corruption_accuracy()["contrast"]
    paths = res.save(tmp_path / "out")
    d = json.loads(paths["json"].read_text())
    assert isinstance(d["summary"]["clean_error"], float) and d["summary"]["mce"] is None
    assert d["n_examples"] == {"clean": 11, "per_cell": 11, "total": 33}
    assert d["train_corruptions"] == ["contrast", "fog"] and d["overlap"] == ["contrast"]
    assert d["data"]["limit"] == 11 and torch.__version__.startswith(d["meta"]["versions"]["torch"])
    assert {"git_sha", "machine", "world_size"} <= set(d["meta"])
    back = EvalResults.from_json(tmp_path / "out")
    assert back.summary() == res.summary() and back.cells == res.cells
    assert paths["csv"].read_text().splitlines()[:2] == [
        "corruption,severity,correct,total,error,accuracy", "clean,0,11,11,0.0000,100.0000"]
    md = paths["md"].read_text()
    assert "| model | dataset | clean acc | known acc | unknown acc | mCE |" in md and "speckle_noise" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = compare([res, back], out_dir=tmp_path / "cmp", names=["a", "b"])
    assert "| a | array | 100.00 |" in text and (tmp_path / "cmp" / "compare.png").is_file()


def test_model_output_and_input_errors(tmp_path):
    ds = ArrayDataset(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64), tuple("abcdefghij"), "zeros")
    with pytest.raises(TypeError, match="logits Tensor"):
        vqsa.evaluate(lambda x: (x.sum((1, 2, 3)),), ds, num_workers=0, progress=False)
    with pytest.raises(TypeError, match="callable"):
        vqsa.evaluate("resnet50", ds, num_workers=0)
    with pytest.raises(ValueError, match="limit"):
        vqsa.evaluate(PixelOracle(10), ds, num_workers=0, limit=0, progress=False)
    # plain callables work too (RobustBench-style), and nn.Modules go back to train mode afterwards
    res = vqsa.evaluate(lambda x: torch.zeros(len(x), 10), ds, num_workers=0, progress=False)
    assert res.clean_accuracy == 100.0
    m = PixelOracle(10).train()
    vqsa.evaluate(m, ds, num_workers=0, progress=False)
    assert m.training


def test_with_normalization():
    inner = nn.Identity()
    wrapped = with_normalization(inner)
    x = torch.full((1, 3, 2, 2), 0.485)
    assert wrapped(x)[0, 0].abs().max() < 1e-6
    assert math.isclose(wrapped(torch.ones(1, 3, 1, 1))[0, 2, 0, 0].item(), (1 - 0.406) / 0.225, rel_tol=1e-6)
    with pytest.raises(ValueError, match="std"):
        with_normalization(inner, std=(0.2, 0.0, 0.2))


def test_results_validation(tmp_path):
    with pytest.raises(ValueError, match="appears twice"):
        EvalResults("x", "y", None, None, [CellCount("fog", 1, 1, 2), CellCount("fog", 1, 1, 2)])
    with pytest.raises(ValueError, match="invalid"):
        EvalResults("x", "y", None, None, [CellCount("fog", 1, 3, 2)])
    (tmp_path / "r.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a vqsa evaluation results"):
        EvalResults.from_json(tmp_path / "r.json")


def test_imagenet_r_scores_within_its_200_classes(tmp_path):
    from PIL import Image

    from vqsa.data.imagenet_subsets import imagenet_wnids, subset_indices

    r_idx = subset_indices("imagenet-r").tolist()
    outside = next(i for i in range(1000) if i not in r_idx)
    a, b = r_idx[0], r_idx[-1]
    for k, n in ((a, 3), (b, 1)):
        d = tmp_path / "imagenet-r" / imagenet_wnids()[k]
        d.mkdir(parents=True)
        for j in range(n):
            Image.fromarray(np.full((300, 260, 3), 40 * j, np.uint8)).save(d / f"{j}.png")
    logits = torch.zeros(1000)
    logits[outside], logits[a] = 10.0, 5.0  # best class is outside the 200; best inside is `a`
    res = vqsa.evaluate(lambda x: logits.expand(len(x), -1), "imagenet-r", tmp_path, num_workers=0, progress=False)
    assert (res.clean.correct, res.clean.total) == (3, 4) and res.data["class_subset"] == 200
    (tmp_path / "imagenet-r" / imagenet_wnids()[outside]).mkdir()
    with pytest.raises(ValueError, match="not among the 200 imagenet-r classes"):
        vqsa.evaluate(lambda x: logits.expand(len(x), -1), "imagenet-r", tmp_path, num_workers=0, progress=False)
