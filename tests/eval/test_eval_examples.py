"""Which examples an evaluation ran on: CIFAR-10-C written with --limit is scored against its own clean images,
results record the examples (indices + fingerprint), `compare` warns about results on different examples, sources,
profiles, numbers or severities, and `--indices-from` evaluates the same examples again."""
import json
import warnings

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import vqsa
from evalhelpers import PixelOracle, write_cifar10, write_cifar10_c
from vqsa.cli.main import main
from vqsa.data import ArrayDataset
from vqsa.eval import CellCount, EvalResults, compare
from vqsa.eval.datasets import build_plan


class PixelSum(nn.Module):
    """Logits from the pixel sum of each image: two runs agree on every item only if they see the same pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = (x.sum((1, 2, 3)) * 255).round().long() % 10
        return nn.functional.one_hot(cls, 10).float() * self.w


def _array(n: int = 30, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    images[:, 0, 0, 0] = labels
    return ArrayDataset(images, labels, tuple("abcdefghij"), f"rand{n}")


def _quiet(**kw):
    return {"num_workers": 0, "progress": False, "batch_size": 7, **kw}


# ---- 1. CIFAR-10-C written with --limit: the clean set is the same images ---------------------------------------


def test_limited_cifar10_c_is_scored_on_its_own_clean_images(tmp_path):
    labels = write_cifar10(tmp_path, n=10)
    write_cifar10_c(tmp_path / "CIFAR-10-C", ["fog"], n=3, clean_labels=labels, indices=[1, 4, 7])
    res = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog"], [1, 2], **_quiet())
    assert res.clean == CellCount("clean", 0, 3, 3) and [c.total for c in res.cells] == [3, 3]
    assert res.examples["indices"] == [1, 4, 7] and res.examples["of_size"] == 10
    d = res.to_dict()
    assert d["n_examples"] == {"clean": 3, "per_cell": 3, "total": 9}
    assert "3 examples per cell" in res.to_markdown() and "10 examples" not in res.to_markdown()
    plan = build_plan("cifar10-c", tmp_path, ["fog"], [1])
    test = np.load(tmp_path / "cifar10" / "test.npz")
    np.testing.assert_array_equal(plan.cells[0].images.images, test["images"][[1, 4, 7]])


def test_unreconcilable_cifar10_c_sizes_or_labels_raise(tmp_path):
    labels = write_cifar10(tmp_path, n=10)
    write_cifar10_c(tmp_path / "CIFAR-10-C", ["fog"], n=3)  # no manifest: which 3 test images?
    with pytest.raises(ValueError, match="3 images per severity but the clean set .* has 10.*--no-clean"):
        vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog"], [1], **_quiet())
    res = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog"], [1], clean=False, **_quiet())
    assert res.clean is None and res.cells[0].total == 3
    other = tmp_path / "other"
    write_cifar10(other, n=10)
    wrong = (labels + 1) % 10  # a manifest whose indices point at other labels: another copy of CIFAR-10
    write_cifar10_c(other / "CIFAR-10-C", ["fog"], n=3, clean_labels=wrong, indices=[0, 1, 2])
    with pytest.raises(ValueError, match="labels .* differ .* another copy of CIFAR-10"):
        vqsa.evaluate(PixelOracle(10), "cifar10-c", other, ["fog"], [1], **_quiet())


@pytest.mark.data
def test_cli_corrupt_limit_then_evaluate_pairs_clean_and_corrupted(cifar10_root, tmp_path, capsys):
    c10c = tmp_path / "c10c"
    assert main(["corrupt", "--cifar10", "--data-root", str(cifar10_root), str(c10c), "--limit", "20",
                 "--corruptions", "fog", "--quiet"]) == 0
    root = tmp_path / "root"
    root.mkdir()
    (root / "CIFAR-10-C").symlink_to(c10c)
    (root / "cifar10").symlink_to(cifar10_root / "cifar10")
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", "cifar_resnet8", "--dataset", "cifar10-c", "--data-root", str(root),
                 "--corruptions", "fog", "--severities", "1", "3", "--released-only", "--workers", "0",
                 "--no-progress", "--out", str(out)]) == 0
    d = json.loads((out / "results.json").read_text())
    idx = json.loads((c10c / "vqsa_corrupt.json").read_text())["indices"]
    assert d["n_examples"] == {"clean": 20, "per_cell": 20, "total": 60}
    assert d["data"]["examples"]["indices"] == idx and "20 examples per cell" in (out / "results.md").read_text()
    # the same examples corrupted on the fly are the released rows: same pixels, same counts
    model = PixelSum()
    released = vqsa.evaluate(model, "cifar10-c", root, ["fog"], [1, 3], on_the_fly=False, **_quiet())
    again = vqsa.evaluate(model, "cifar10-c", root, ["fog"], [1, 3], on_the_fly=True, profile="cifar",
                          indices=out / "results.json", **_quiet())
    assert again.clean == released.clean and again.cells == released.cells
    assert again.examples["sha256"] == released.examples["sha256"]


# ---- 2. examples recorded; compare warns; --indices-from ---------------------------------------------------------


def test_training_style_and_cli_style_examples_differ_and_compare_warns(tmp_path):
    full = _array(30)
    sub = full.subset(12, seed=0)  # what training evaluates: eval.n_examples drawn from the val subset
    kw = _quiet(corruptions=["contrast"], severities=[2], profile="cifar", seed=0, limit=8)
    train_like = vqsa.evaluate(PixelOracle(10), sub, **kw)
    cli_like = vqsa.evaluate(PixelOracle(10), full, **kw)
    assert train_like.source == cli_like.source  # the label alone cannot tell them apart ...
    assert train_like.examples["sha256"] != cli_like.examples["sha256"]  # ... the recorded examples can
    assert cli_like.examples["indices"] == np.sort(np.random.default_rng(0).permutation(30)[:8]).tolist()
    with pytest.warns(UserWarning, match="different example sets"):
        text = compare([train_like, cli_like], names=["train", "cli"])
    assert "## Comparability warnings" in text and "different example sets" in text
    # the API the trainer should use: the full set + the val-subset indices -> same images, dataset indices
    sub_idx = np.sort(np.random.default_rng(0).permutation(30)[:12])
    via_indices = vqsa.evaluate(PixelOracle(10), full, indices=sub_idx, **kw)
    assert via_indices.examples["sha256"] == train_like.examples["sha256"]
    assert set(via_indices.examples["indices"]) <= set(sub_idx.tolist())
    via_indices.save(tmp_path / "r")
    again = vqsa.evaluate(PixelOracle(10), full, indices=tmp_path / "r", **_quiet(
        corruptions=["contrast"], severities=[2], profile="cifar", seed=0))
    assert again.examples["indices"] == via_indices.examples["indices"] and again.cells == via_indices.cells
    train_like.save(tmp_path / "t")
    with pytest.raises(ValueError, match="not the images selected here .* fingerprints"):
        vqsa.evaluate(PixelOracle(10), full, indices=tmp_path / "t", **_quiet())


def test_indices_from_reuses_the_recorded_seed_of_on_the_fly_corruptions(tmp_path):
    """Repeating an evaluation's examples repeats its noise draws too: its seed is taken unless one is given, and
    a different one warns (the counts then differ)."""
    full = _array(30)
    kw = _quiet(corruptions=["gaussian_noise"], severities=[5], profile="cifar")
    first = vqsa.evaluate(PixelSum(), full, seed=3, **kw)
    first.save(tmp_path / "r", plot=False)
    again = vqsa.evaluate(PixelSum(), full, indices=tmp_path / "r", **kw)
    assert again.data["seed"] == 3 and again.cells == first.cells
    with pytest.warns(UserWarning, match="seed 0 differs from the seed 3 of .*drawn anew"):
        other = vqsa.evaluate(PixelSum(), full, indices=tmp_path / "r", seed=0, **kw)
    assert other.cells != first.cells


def test_compare_warns_on_profile_n_and_severity_differences():
    from vqsa.eval.compare import comparability_warnings

    ds = _array(20)
    base = _quiet(corruptions=["contrast"], severities=[2], profile="cifar", seed=0)
    a = vqsa.evaluate(PixelOracle(10), ds, **base)
    same = vqsa.evaluate(PixelOracle(10), ds, **base)
    assert comparability_warnings([a, same]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare([a, same])  # nothing to warn about
    prof = vqsa.evaluate(PixelOracle(10), ds, **{**base, "profile": "imagenet"})
    assert any("different corruption profiles" in w for w in comparability_warnings([a, prof]))
    sev = vqsa.evaluate(PixelOracle(10), ds, **{**base, "severities": [3]})
    assert any("different severities" in w for w in comparability_warnings([a, sev]))
    small = vqsa.evaluate(PixelOracle(10), ds, **base, limit=5)
    got = comparability_warnings([a, small])
    assert any("different numbers of examples" in w for w in got)
    assert any("different example sets" in w for w in got)


def test_limit_larger_than_the_set_warns():
    with pytest.warns(UserWarning, match="limit 100 is larger than the 20 images"):
        res = vqsa.evaluate(PixelOracle(10), _array(20), limit=100, **_quiet())
    assert res.clean.total == 20 and any("limit 100" in n for n in res.notes)


def test_cli_evaluate_limit_and_device_errors(tmp_path, capsys, monkeypatch):
    write_cifar10(tmp_path, n=6)
    base = ["evaluate", "--model", "cifar_resnet8", "--dataset", "cifar10", "--data-root", str(tmp_path),
            "--workers", "0", "--no-progress", "--out", str(tmp_path / "o")]
    with pytest.warns(UserWarning, match="limit 100000 is larger than the 6 images"):
        assert main([*base, "--limit", "100000"]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*base, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err and "NVIDIA" not in err


# ---- 4. labels, notes, Markdown ----------------------------------------------------------------------------------


def test_results_are_labelled_by_run_name_with_the_architecture_apart(tmp_path):
    from vqsa.eval.model import load_for_eval

    runs = []
    for name in ("tiny_ft", "tiny_vqsa"):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        model = vqsa.create_model("cifar_resnet8", num_classes=10, codebook_size=8)
        vqsa.save_model(model, run / "model.safetensors")
        (run / "config.yaml").write_text(yaml.safe_dump({"name": name}))
        _, info, _ = load_for_eval(run / "model.safetensors")
        assert info["label"] == name and info["architecture"] == "cifar_resnet8"
        # what training writes: model_info from the model config (no label) into the run folder
        res = vqsa.evaluate(model, _array(8), model_info=dict(model.model_config), **_quiet())
        assert res.model["architecture"] == "cifar_resnet8"
        res.save(run, plot=False)
        runs.append(run)
    text = compare(runs)
    assert "| tiny_ft |" in text and "| tiny_vqsa |" in text and "#1" not in text


def test_notes_and_ce_header_wording():
    clean_only = EvalResults("imagenet", "clean images", None, CellCount("clean", 0, 5, 10), [])
    assert "CIFAR" not in clean_only.metric_notes()["mce"] and "AlexNet" not in clean_only.metric_notes()["mce"]
    cifar = EvalResults("cifar10-c", "x", None, CellCount("clean", 0, 5, 10), [CellCount("fog", 1, 3, 10)])
    assert "CE =" not in cifar.to_markdown() and "| CE" not in cifar.to_markdown()
    cells = [CellCount(c, s, 5, 10) for c in vqsa.metrics.KNOWN_CORRUPTIONS for s in range(1, 6)]
    imagenet = EvalResults("imagenet-c", "x", "alexnet", CellCount("clean", 0, 7, 10), cells)
    assert "CE = AlexNet-normalised" in imagenet.to_markdown() and "| CE |" in imagenet.to_markdown()
    mixed = EvalResults("imagenet-c", "x", None, CellCount("clean", 0, 5, 50), [CellCount("fog", 1, 3, 10)])
    assert "50 clean examples but 10 per corrupted cell" in mixed.to_markdown()


def test_fallback_warning_names_the_folder_it_used(tmp_path):
    write_cifar10(tmp_path)
    with pytest.warns(UserWarning, match=f"corrupting CIFAR-10 test \\({tmp_path / 'cifar10' / 'test.npz'}\\)"):
        build_plan("cifar10-c", tmp_path, ["contrast"], [1])


def test_partial_cifar10_c_is_summarised(tmp_path, capsys):
    labels = write_cifar10(tmp_path, n=6)
    write_cifar10_c(tmp_path / "CIFAR-10-C", ["fog"], n=6, clean_labels=labels, indices=range(6))
    with pytest.raises(FileNotFoundError) as e:
        build_plan("cifar10-c", tmp_path, "all", [1, 2, 3, 4, 5])
    assert "90 cifar10-c cell(s) missing" in str(e.value) and len(str(e.value).splitlines()) <= 4
    with pytest.warns(UserWarning, match="skipped 90 missing"):
        res = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, "all", allow_missing=True, **_quiet())
    notes = [line for line in res.to_markdown().splitlines() if "skipped" in line or "e.g." in line]
    assert len(notes) <= 2 and "skipped 90 cells of 18 corruption(s), severities 1-5 of gaussian_noise" in notes[0]


def test_cli_help_documents_severities(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "severities to evaluate" in capsys.readouterr().out


def test_same_set_in_another_row_order_warns_only_for_subsets(tmp_path):
    labels = write_cifar10(tmp_path, n=8)
    order = np.argsort(labels, kind="stable")[::-1]  # the clean images, re-ordered: like the official release
    assert not np.array_equal(labels[order], labels)
    write_cifar10_c(tmp_path / "CIFAR-10-C", ["fog"], n=8, clean_labels=labels, indices=order)
    (tmp_path / "CIFAR-10-C" / "vqsa_corrupt.json").unlink()  # no manifest, as the official files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog"], [1], **_quiet())
    assert full.clean.total == 8 and any("not in the order" in n for n in full.notes)
    with pytest.warns(UserWarning, match="not in the order of the clean set"):
        vqsa.evaluate(PixelOracle(10), "cifar10-c", tmp_path, ["fog"], [1], limit=4, **_quiet())
