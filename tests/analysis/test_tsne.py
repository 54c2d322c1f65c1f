import json

import numpy as np
import pytest

from vqsa.analysis.tsne import analyze_tsne, embed_tsne, feature_metrics


def _blobs(separation: float, n: int = 20, k: int = 3, d: int = 8, seed: int = 0):
    """k classes of n clean features, class centres ``separation`` apart, each with a corrupted copy."""
    rng = np.random.default_rng(seed)
    centres = np.eye(k, d) * separation
    labels = np.repeat(np.arange(k), n)
    clean = centres[labels] + rng.normal(size=(k * n, d))
    return clean, labels, rng


def _metrics(clean, labels, corrupted):
    x = np.concatenate([clean, corrupted])
    ids = np.tile(np.arange(len(clean)), 2)
    conds = np.repeat(["clean", "fog"], len(clean))
    return feature_metrics(x, np.tile(labels, 2), conds, ids)


def test_silhouette_separates_separable_from_inseparable():
    clean, labels, rng = _blobs(separation=12.0)
    sep = _metrics(clean, labels, clean + 0.1 * rng.normal(size=clean.shape))
    mixed, labels, rng = _blobs(separation=0.0)
    insep = _metrics(mixed, labels, mixed + 0.1 * rng.normal(size=mixed.shape))
    assert sep["silhouette_class"] > 0.7
    assert abs(insep["silhouette_class"]) < 0.1
    # corrupted copies next to their clean image: the conditions overlap and pairs are short
    assert sep["silhouette_condition"] < 0.05
    assert sep["pair_to_inter_class"] < 0.05 and sep["pair_to_between_image"] < 0.1
    assert sep["intra_corrupted_to_clean"] == pytest.approx(1.0, abs=0.05)


def test_pair_metrics_see_a_quality_dependent_shift():
    clean, labels, rng = _blobs(separation=12.0)
    shifted = clean + np.r_[np.zeros(7), 30.0]  # every corrupted feature moved far along one axis
    m = _metrics(clean, labels, shifted)
    assert m["silhouette_condition"] > 0.5
    assert m["pair_to_inter_class"] > 1.0
    assert m["pair"] == pytest.approx(30.0)


def test_metrics_are_scale_free():
    clean, labels, rng = _blobs(separation=5.0)
    corrupted = clean + rng.normal(size=clean.shape)
    a, b = _metrics(clean, labels, corrupted), _metrics(100 * clean, labels, 100 * corrupted)
    for key in ("silhouette_class", "silhouette_condition", "pair_to_inter_class", "pair_to_between_image"):
        assert a[key] == pytest.approx(b[key])


def test_undefined_metrics_are_none():
    x = np.random.default_rng(0).normal(size=(6, 3))
    m = feature_metrics(x, np.zeros(6, int), np.array(["clean"] * 6), np.arange(6))
    assert m["silhouette_class"] is None and m["silhouette_condition"] is None
    assert m["inter_class"] is None and m["pair"] is None and m["pair_to_inter_class"] is None


def test_feature_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="one entry per feature row"):
        feature_metrics(np.zeros((4, 2)), np.zeros(3), np.array(["clean"] * 4), np.arange(4))
    with pytest.raises(ValueError, match="NaN"):
        feature_metrics(np.full((4, 2), np.nan), np.zeros(4), np.array(["clean"] * 4), np.arange(4))


def test_embedding_keeps_separable_clusters():
    conds, ids = np.array(["clean"] * 45), np.arange(45)
    clean, labels, _ = _blobs(separation=12.0, n=15)
    emb = embed_tsne(clean, max_iter=500)
    assert emb.shape == (45, 2)
    assert feature_metrics(emb, labels, conds, ids)["silhouette_class"] > 0.8
    mixed, labels, _ = _blobs(separation=0.0, n=15)
    assert abs(feature_metrics(embed_tsne(mixed, max_iter=500), labels, conds, ids)["silhouette_class"]) < 0.2
    with pytest.raises(ValueError, match="perplexity"):
        embed_tsne(clean, perplexity=100)


def test_analyze_tsne_writes_figures_and_metrics(tiny_vqsa, tiny_images, tmp_path):
    images, labels = tiny_images
    res = analyze_tsne(tiny_vqsa, images, labels, corruptions=["gaussian_noise", "defocus_blur"], classes=[2, 0, 1],
                       per_class=4, class_names=["a", "b", "c", "d"], out_dir=tmp_path, max_iter=250)
    for name in ("tsne_corruption.png", "tsne_class.png", "tsne.json"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "tsne.json").read_text())
    assert saved["corruption_wise"]["class"] == "c" and saved["corruption_wise"]["n_points"] == 4 * 3
    assert saved["class_wise"]["classes"] == ["c", "a", "b"] and saved["class_wise"]["n_points"] == 3 * 4 * 3
    for view in ("corruption_wise", "class_wise"):
        for stage in ("before", "after"):
            assert set(saved[view][stage]) == {"features", "embedding"}
    assert saved["class_wise"]["after"]["features"]["silhouette_class"] is not None
    assert saved["corruption_wise"]["before"]["features"]["silhouette_class"] is None  # one class
    assert res["corruption_wise"] == saved["corruption_wise"]


def test_analyze_tsne_rejects_missing_classes(tiny_vqsa, tiny_images):
    images, labels = tiny_images
    with pytest.raises(ValueError, match="no images"):
        analyze_tsne(tiny_vqsa, images, labels, corruptions=["fog"], classes=[9])
    with pytest.raises(ValueError, match="fewer than"):
        analyze_tsne(tiny_vqsa, images, labels, corruptions=["fog"], classes=[0], per_class=50)
