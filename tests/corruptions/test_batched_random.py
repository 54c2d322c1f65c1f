"""RandomCorruption: the configured draw distribution, labels, reproducibility, state_dict and bad arguments."""
from collections import Counter

import pytest
import torch

from vqsa.corruptions import SUBSETS
from vqsa.corruptions.batched import RandomCorruption, corrupt_batch
from vqsa.corruptions.batched.random import CLEAN


def _images(n, size=32):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)


def test_stratified_cycle_deals_every_cell_once():
    rc = RandomCorruption(seed=0)
    assert len(rc.grid) == 16 * 5
    cells = torch.cat([rc.draw(n) for n in (7, 33, 40, 80, 1, 79)])  # 240 = three cycles, across uneven batches
    for cycle in cells.reshape(3, 80):
        assert sorted(cycle.tolist()) == list(range(80))
    assert not torch.equal(cells[:80], cells[80:160])  # each cycle is a fresh permutation


def test_forward_labels_follow_the_cycle_and_the_images():
    rc = RandomCorruption(corruptions=["contrast", "pixelate"], severities=(2, 4), seed=1)
    x = _images(6)
    y, (corr, sev) = rc(x, return_labels=True)
    assert y.shape == x.shape and y.dtype == x.dtype and corr.device == x.device
    cells = Counter(zip(corr.tolist(), sev.tolist()))
    assert cells == Counter({(CLEAN, 0): 2, (0, 2): 1, (0, 4): 1, (1, 2): 1, (1, 4): 1})
    for i in range(6):  # deterministic corruptions: each image equals a direct call with its label
        expected = x[i:i + 1] if corr[i] == CLEAN else corrupt_batch(x[i:i + 1], rc.corruptions[corr[i]], int(sev[i]))
        assert torch.equal(y[i:i + 1], expected)


def test_uniform_mode_draws_every_cell_equally_often():
    rc = RandomCorruption(mode="uniform", clean=False, seed=2)
    counts = torch.bincount(rc.draw(15 * 5 * 400), minlength=75).float()
    assert len(rc.grid) == 75 and counts.min() > 400 * 0.75 and counts.max() < 400 * 1.25
    chi2 = ((counts - 400) ** 2 / 400).sum()
    assert chi2 < 120  # 74 degrees of freedom: p > 0.999 for a uniform draw


def test_seeded_modules_reproduce_and_state_dict_resumes():
    x = _images(8)
    a, b = RandomCorruption(seed=5), RandomCorruption(seed=5)
    assert torch.equal(a(x), b(x))
    state = a.state_dict()
    after = a(x)
    c = RandomCorruption(seed=99)
    c.load_state_dict(state)
    assert torch.equal(c(x), after)
    assert "_extra_state" in state


def test_subset_names_and_defaults():
    assert RandomCorruption().corruptions == SUBSETS["common"]
    assert RandomCorruption("validation", clean=False).corruptions == SUBSETS["validation"]
    assert RandomCorruption([0, "fog"]).corruptions == ("gaussian_noise", "fog")
    one = RandomCorruption("fog", severities=3)  # one name, one severity
    assert one.corruptions == ("fog",) and one.severities == (3,)
    assert RandomCorruption(9).corruptions == ("fog",)
    RandomCorruption(seed=2**64 - 1)


@pytest.mark.parametrize("kwargs, error", [
    ({"corruptions": "weird"}, ValueError),
    ({"corruptions": ["fog", "fog"]}, ValueError),
    ({"corruptions": ["clean"]}, ValueError),
    ({"severities": (0, 1)}, ValueError),
    ({"severities": ()}, ValueError),
    ({"mode": "cyclic"}, ValueError),
    ({"seed": -1}, ValueError),
    ({"seed": 2**64}, ValueError),
    ({"corruptions": "fogg"}, ValueError),
    ({"profile": "mnist"}, ValueError),
    ({"corruptions": [], "clean": False}, ValueError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        RandomCorruption(**kwargs)
