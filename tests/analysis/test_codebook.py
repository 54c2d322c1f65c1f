import json

import numpy as np
import pytest

from vqsa.analysis.codebook import (
    agreement_table,
    analyze_codebook,
    code_agreement,
    read_usage_history,
    usage_stats,
)


def test_agreement_is_one_for_identical_codes():
    idx = np.random.default_rng(0).integers(0, 50, 400)
    res = code_agreement(idx, idx.copy(), 50)
    assert res["agreement"] == 1.0
    assert res["chance"] < 0.05
    assert res["kappa"] == pytest.approx(1.0)


def test_chance_is_one_for_a_collapsed_codebook():
    one = np.full(100, 7)
    res = code_agreement(one, one, 64)
    assert res["agreement"] == 1.0 and res["chance"] == 1.0
    assert res["kappa"] is None  # agreement says nothing when everything shares one code


def test_chance_is_one_over_k_for_uniform_usage():
    k = 20
    clean = np.tile(np.arange(k), 50)
    corrupted = np.random.default_rng(1).permutation(clean)  # independent of clean, same uniform usage
    res = code_agreement(clean, corrupted, k)
    assert res["chance"] == pytest.approx(1 / k)
    assert abs(res["agreement"] - 1 / k) < 0.03
    assert abs(res["kappa"]) < 0.05


def test_agreement_table_pools_all_pairs():
    clean = np.array([0, 1, 2, 3])
    table = agreement_table(clean, {"a": np.array([0, 1, 2, 3]), "b": np.array([1, 1, 1, 1])}, 4)
    assert table["a"]["agreement"] == 1.0
    assert table["b"]["agreement"] == 0.25
    assert table["overall"]["n"] == 8 and table["overall"]["agreement"] == pytest.approx(5 / 8)
    # pooled distributions: clean uniform, corrupted 5/8 on code 1
    assert table["overall"]["chance"] == pytest.approx(0.25)


def test_usage_stats():
    stats = usage_stats(np.array([0, 0, 0, 1]), 10)
    assert stats["codes_used"] == 2 and stats["dead_codes"] == 8 and stats["fraction_used"] == 0.2
    assert stats["top1_share"] == 0.75
    p = np.array([0.75, 0.25])
    assert stats["perplexity"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("bad", [np.array([0, 10]), np.array([-1]), np.array([[0]]), np.array([0.5])])
def test_bad_indices_are_rejected(bad):
    with pytest.raises((ValueError, TypeError), match="indices"):
        code_agreement(bad, bad, 10)


def test_unpaired_indices_are_rejected():
    with pytest.raises(ValueError, match="paired"):
        code_agreement(np.array([0, 1]), np.array([0]), 4)


def test_read_usage_history(tmp_path):
    lines = [{"epoch": 1, "train_loss": 2.0, "codebook_perplexity": 3.5, "codebook_used": 0.25},
             {"epoch": 2, "train_loss": 1.5, "codebook_perplexity": 5.0, "codebook_used": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert read_usage_history(tmp_path) == [{"epoch": 1, "perplexity": 3.5, "fraction_used": 0.25},
                                            {"epoch": 2, "perplexity": 5.0, "fraction_used": 0.5}]
    assert read_usage_history(tmp_path / "model.safetensors") == read_usage_history(tmp_path)
    (tmp_path / "empty_run").mkdir()
    assert read_usage_history(tmp_path / "empty_run") == []
    (tmp_path / "metrics.jsonl").write_text("{broken\n")
    with pytest.raises(ValueError, match="metrics.jsonl:1"):
        read_usage_history(tmp_path)


def test_analyze_codebook_writes_files(tiny_vqsa, tiny_images, tmp_path):
    images, _ = tiny_images
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "codebook_perplexity": 2.0,
                                                        "codebook_used": 0.125}) + "\n")
    before = tiny_vqsa.vq.usage_counts.clone()
    res = analyze_codebook(tiny_vqsa, images, corruptions=["gaussian_noise", "contrast"], run_dir=tmp_path,
                           out_dir=tmp_path / "out")
    for name in ("codebook.json", "codebook_usage.png", "codebook_agreement.png", "codebook_training.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert set(res["agreement"]) == {"gaussian_noise", "contrast", "overall"}
    assert res["usage"]["clean"]["images"] == len(images)
    assert res["usage"]["corrupted"]["images"] == 2 * len(images)
    assert res["training_history"][0]["perplexity"] == 2.0
    assert json.loads((tmp_path / "out" / "codebook.json").read_text())["agreement"] == res["agreement"]
    assert bool((tiny_vqsa.vq.usage_counts == before).all())  # analysis does not count as codebook use


def test_analyze_codebook_needs_a_codebook(tiny_images):
    import vqsa

    with pytest.raises(ValueError, match="no codebook"):
        analyze_codebook(vqsa.create_model("cifar_resnet8", 10, vq=False), tiny_images[0], corruptions=["fog"])
