"""RobustBench's layouts for the corruptions leaderboard: the model-info JSON, the unaggregated row, and the
first-N example convention."""
import csv
import io
import json

import pytest
import torch

import vqsa
from evalhelpers import write_cifar10, write_cifar10_c
from vqsa import metrics
from vqsa.cli.main import main
from vqsa.eval import EvalResults
from vqsa.eval.results import CellCount
from vqsa.eval.robustbench import ROBUSTBENCH_ORDER, model_info, unaggregated_csv


def _results(corruptions=metrics.KNOWN_CORRUPTIONS, dataset="cifar10-c"):
    cells = [CellCount(c, s, 40 + 3 * i + s, 100) for i, c in enumerate(corruptions) for s in range(1, 6)]
    return EvalResults(dataset=dataset, source="released files", baseline=None, clean=CellCount("clean", 0, 93, 100),
                       cells=cells, train_corruptions=[], model={"label": "vqsa_model", "architecture": "airnet"})


def test_model_info_takes_robustbenchs_definition_and_formats():
    r = _results()
    info = model_info(r, venue="CVPR 2023")
    expected = sum(c.correct / c.total for c in r.cells) / 75 * 100
    assert info["corruptions_acc"] == f"{expected:.2f}" and info["clean_acc"] == "93.00"
    assert info["dataset"] == "cifar10" and info["eps"] is None and info["venue"] == "CVPR 2023"
    assert "unseen in training" in info["footnote"]
    assert set(ROBUSTBENCH_ORDER) == set(metrics.KNOWN_CORRUPTIONS)


def test_unaggregated_row_follows_robustbenchs_column_order():
    rows = list(csv.reader(io.StringIO(unaggregated_csv(_results(), "mine"))))
    assert rows[0][1:6] == ["shot_noise"] * 5 and rows[0][-1] == "elastic_transform"
    assert rows[1][1:6] == ["1", "2", "3", "4", "5"] and rows[2][0] == "mine"
    shot = metrics.KNOWN_CORRUPTIONS.index("shot_noise")
    assert float(rows[2][1]) == pytest.approx((40 + 3 * shot + 1) / 100)


def test_incomplete_results_are_refused():
    with pytest.raises(ValueError, match="15 common corruptions at severities 1-5"):
        model_info(_results(metrics.KNOWN_CORRUPTIONS[:14]))
    with pytest.raises(ValueError, match="not cifar10"):
        model_info(_results(dataset="cifar10"))


def test_cli_first_n_and_robustbench_files(tmp_path, capsys):
    root = tmp_path / "data"
    labels = write_cifar10(root, n=10)
    write_cifar10_c(root / "cifar10-c", metrics.KNOWN_CORRUPTIONS, n=10, clean_labels=labels,
                    indices=list(range(10)))
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    vqsa.save_model(vqsa.create_model("cifar_resnet8", num_classes=10, vq=False), model)
    out = tmp_path / "out"
    rc = main(["evaluate", "--checkpoint", str(model), "--dataset", "cifar10-c", "--data-root", str(root),
               "--corruptions", "common", "--first-n", "4", "--robustbench", "--workers", "0", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "results.json").read_text())
    assert d["data"]["examples"]["indices"] == [0, 1, 2, 3] and d["n_examples"]["per_cell"] == 4
    info = json.loads((out / "robustbench_model_info.json").read_text())
    assert float(info["corruptions_acc"]) == pytest.approx(100 - d["summary"]["mean_error"], abs=0.006)
    assert (out / "robustbench_unaggregated.csv").read_text().count("\n") == 3
    assert main(["evaluate", "--checkpoint", str(model), "--dataset", "cifar10-c", "--data-root", str(root),
                 "--first-n", "4", "--limit", "3", "--workers", "0", "--out", str(out)]) == 1
    assert "--first-n picks the examples itself" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(model), "--dataset", "cifar10-c", "--data-root", str(root),
                 "--corruptions", "fog", "--robustbench", "--workers", "0", "--out", str(out)]) == 1
    assert "--robustbench needs the 15 common corruptions" in capsys.readouterr().err
