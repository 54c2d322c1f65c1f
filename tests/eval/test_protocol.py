"""Every result says which protocol its numbers follow: the corruptions seen in training, marked per corruption,
with unseen-only metrics, and comparisons across protocols are flagged."""
import json

import pytest

from vqsa import metrics
from vqsa.eval import EvalResults, comparability_warnings, markdown_tables
from vqsa.eval.results import CellCount


def _results(train, baseline=None, dataset="cifar10-c"):
    cells = [CellCount(c, s, 50 + i, 100) for i, c in enumerate(metrics.CORRUPTION_NAMES) for s in range(1, 6)]
    return EvalResults(dataset=dataset, source="released files", baseline=baseline,
                       clean=CellCount("clean", 0, 90, 100), cells=cells, train_corruptions=train,
                       model={"label": f"trained on {len(train) if train is not None else '?'}"})


def test_clean_training_makes_every_corruption_unseen():
    r = _results([])
    d = r.to_dict()
    assert r.protocol == "unseen" and d["summary"]["protocol"] == "unseen"
    assert all(v["seen_in_training"] is False for v in d["per_corruption"].values())
    assert r.unseen_accuracy == pytest.approx(r._group_accuracy(metrics.CORRUPTION_NAMES))
    assert r.unseen_mean_error == pytest.approx(100 - r.unseen_accuracy)
    assert "every evaluated corruption unseen in training (trained without corruptions)" in markdown_tables([r])


def test_training_on_the_common_corruptions_is_the_seen_protocol():
    r = _results(list(metrics.KNOWN_CORRUPTIONS))
    d = r.to_dict()
    assert r.protocol == "seen"
    seen = {c for c, v in d["per_corruption"].items() if v["seen_in_training"]}
    assert seen == set(metrics.KNOWN_CORRUPTIONS)
    assert r.unseen_accuracy == pytest.approx(r.unknown_accuracy)
    assert "15 evaluated corruption(s) seen in training" in markdown_tables([r])
    assert _results(None).protocol == "unknown" and _results(None).to_dict()["per_corruption"]["fog"][
        "seen_in_training"] is None


def test_unseen_mce_averages_the_ce_of_unseen_corruptions_only():
    r = _results(["fog", "snow"], baseline="alexnet", dataset="imagenet-c")
    ce = r.ce()
    unseen = [c for c in ce if c not in ("fog", "snow")]
    assert r.unseen_mce == pytest.approx(sum(ce[c] for c in unseen) / len(unseen))
    assert _results(None, baseline="alexnet", dataset="imagenet-c").unseen_mce is None


def test_comparing_runs_of_different_protocols_says_so(tmp_path):
    a, b = _results([]), _results(list(metrics.KNOWN_CORRUPTIONS))
    warnings = comparability_warnings([a, b])
    assert any(w.startswith("different training protocols") for w in warnings)
    assert not any("protocols" in w for w in comparability_warnings([a, _results([])]))
    a.save(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["protocol"] == "unseen"
