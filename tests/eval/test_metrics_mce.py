"""vqsa.metrics against published figures and hand-made tables."""
import numpy as np
import pytest
import torch

from vqsa import metrics
from vqsa.metrics import ALEXNET_ERRORS, KNOWN_CORRUPTIONS, UNKNOWN_CORRUPTIONS, mce, relative_mce

# torchvision ResNet-50 on ImageNet-C (bethgelab/game-of-noise Results/clean_results.txt): top-1 accuracy (%) and the
# published per-corruption CE (%); mCE 76.70.
RESNET50 = {
    "gaussian_noise": (29.29, 79.77), "shot_noise": (27.03, 81.58), "impulse_noise": (23.81, 82.58),
    "defocus_blur": (38.75, 74.71), "glass_blur": (26.79, 88.61), "motion_blur": (38.67, 78.03),
    "zoom_blur": (36.24, 79.86), "snow": (32.53, 77.83), "frost": (38.14, 74.84), "fog": (45.83, 66.11),
    "brightness": (68.02, 56.64), "contrast": (39.06, 71.43), "elastic_transform": (45.25, 84.75),
    "pixelate": (44.79, 76.92), "jpeg_compression": (53.41, 76.82),
}
R50_ERRORS = {c: 1 - acc / 100 for c, (acc, _) in RESNET50.items()}


def test_alexnet_constants_shape_and_averages():
    assert list(ALEXNET_ERRORS) == [*KNOWN_CORRUPTIONS, *UNKNOWN_CORRUPTIONS]
    assert len(KNOWN_CORRUPTIONS) == 15 and len(UNKNOWN_CORRUPTIONS) == 4
    assert all(len(v) == 5 for v in ALEXNET_ERRORS.values())
    # averages printed in the reference table (augmix ALEXNET_ERR)
    assert np.mean(ALEXNET_ERRORS["gaussian_noise"]) == pytest.approx(0.886428, abs=1e-9)
    assert np.mean(ALEXNET_ERRORS["saturate"]) == pytest.approx(0.658248, abs=1e-9)


def test_corruption_names_match_engine():
    corruptions = pytest.importorskip("vqsa.corruptions")
    if not hasattr(corruptions, "CORRUPTIONS"):
        pytest.skip("vqsa.corruptions not built yet")
    assert tuple(corruptions.CORRUPTIONS) == metrics.CORRUPTION_NAMES


def test_resnet50_published_mce():
    ce = metrics.corruption_errors(R50_ERRORS)
    for c, (_, published) in RESNET50.items():
        assert ce[c] == pytest.approx(published, abs=0.01), c
    assert mce(R50_ERRORS) == pytest.approx(76.70, abs=0.005)
    # Hendrycks & Dietterich (2019) list ResNet-50 relative mCE 105.0 (clean error 23.9 %).
    assert relative_mce(R50_ERRORS, clean_error=0.2387) == pytest.approx(105.0, abs=0.1)


def test_per_severity_input_equals_mean_input():
    rng = np.random.default_rng(0)
    per_sev = {c: rng.uniform(0.2, 0.9, 5).tolist() for c in KNOWN_CORRUPTIONS}
    means = {c: float(np.mean(v)) for c, v in per_sev.items()}
    assert mce(per_sev) == pytest.approx(mce(means), rel=1e-12)
    # CE_c = sum_s E / sum_s A
    c = "fog"
    assert metrics.corruption_errors(per_sev)[c] == pytest.approx(100 * sum(per_sev[c]) / sum(ALEXNET_ERRORS[c]))


def test_plain_mean_and_user_baseline_on_hand_table():
    errs = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": 0.5}
    assert mce(errs, baseline=None, corruptions=["a", "b"]) == pytest.approx(40.0)
    assert metrics.mean_error(errs, ["a", "b"]) == pytest.approx(40.0)
    assert metrics.mean_accuracy(errs, ["a"]) == pytest.approx(70.0)
    base = {"a": 0.6, "b": [1.0] * 5}
    # CE_a = 0.3 / 0.6 = 50 %, CE_b = 0.5 / 1.0 = 50 %
    assert mce(errs, baseline=base, corruptions=["a", "b"]) == pytest.approx(50.0)
    # relative: (0.3 - 0.1) / (0.6 - 0.2) = 50 %, (0.5 - 0.1) / (1.0 - 0.2) = 50 %
    assert relative_mce(errs, 0.1, baseline=base, corruptions=["a", "b"], baseline_clean_error=0.2) == pytest.approx(50)


def test_relative_mce_hand_table_alexnet():
    # a model whose every cell is AlexNet's error shifted by its clean-error gap has relative mCE 100
    clean = 0.2
    shift = clean - metrics.ALEXNET_CLEAN_ERROR
    errs = {c: [e + shift for e in ALEXNET_ERRORS[c]] for c in KNOWN_CORRUPTIONS}
    assert relative_mce(errs, clean) == pytest.approx(100.0)
    assert mce({c: ALEXNET_ERRORS[c] for c in KNOWN_CORRUPTIONS}) == pytest.approx(100.0)
    assert mce({c: ALEXNET_ERRORS[c] for c in UNKNOWN_CORRUPTIONS}, corruptions="validation") == pytest.approx(100.0)


@pytest.mark.parametrize(
    "errors, match",
    [
        ({c: 0.5 for c in KNOWN_CORRUPTIONS[:-1]}, "missing 1 corruption.*jpeg_compression"),
        ({**{c: 0.5 for c in KNOWN_CORRUPTIONS}, "fog": [0.5] * 4}, "fog.*5 values"),
        ({**{c: 0.5 for c in KNOWN_CORRUPTIONS}, "fog": 45.0}, "fog.*divide percentages by 100"),
        ({**{c: 0.5 for c in KNOWN_CORRUPTIONS}, "fog": -0.1}, r"fog.*\[0, 1\]"),
        ({**{c: 0.5 for c in KNOWN_CORRUPTIONS}, "fog": float("nan")}, r"fog.*\[0, 1\]"),
    ],
)
def test_bad_errors_raise(errors, match):
    with pytest.raises(ValueError, match=match):
        mce(errors)


def test_bad_arguments_raise():
    ok = {c: 0.5 for c in KNOWN_CORRUPTIONS}
    with pytest.raises(ValueError, match="unknown baseline"):
        mce(ok, baseline="resnet")
    with pytest.raises(ValueError, match="corruption group"):
        mce(ok, corruptions="everything")
    with pytest.raises(TypeError, match="fog"):
        mce({**ok, "fog": "0.5"})
    with pytest.raises(TypeError, match="map corruption name"):
        mce([0.5] * 15)
    with pytest.raises(ValueError, match="needs a baseline"):
        relative_mce(ok, 0.1, baseline=None)
    with pytest.raises(ValueError, match="baseline_clean_error"):
        relative_mce(ok, 0.1, baseline={c: 0.9 for c in KNOWN_CORRUPTIONS})
    with pytest.raises(ValueError, match="clean_error"):
        relative_mce(ok, 23.9)


def test_top1_error_and_class_subset():
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0], [3.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 9.0]])
    y = torch.tensor([1, 2, 3])
    assert metrics.top1_error(logits, y) == pytest.approx(1 / 3)
    # restricted to classes {2, 3}: predictions 2, 3, 3 -> rows 2 and 3 right, row 1 wrong
    subset = torch.tensor([2, 3])
    assert metrics.top1_correct(logits, y, subset).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="targets shape"):
        metrics.top1_error(logits, y[:2])
    with pytest.raises(ValueError, match="empty"):
        metrics.top1_error(logits[:0], y[:0])
