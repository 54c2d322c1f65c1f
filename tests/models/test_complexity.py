"""Parameter/FLOP breakdowns and ``vqsa info``."""
import json

import pytest
import torch

import vqsa
from vqsa.analysis import count_flops, count_params
from vqsa.cli.main import main


def test_param_breakdown_sums_to_total_and_matches_shapes():
    model = vqsa.create_model("cifar_resnet8", 10, codebook_size=100)
    parts = count_params(model, by="module")
    d = model.num_features
    assert parts["codebook"] == 100 * d and parts["attention"] == 3 * d * d
    assert parts["head"] == (2 * d * d + d) + (d * 10 + 10)
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"] == count_params(model)
    base = count_params(vqsa.create_model("cifar_resnet8", 10, vq=False), by="module")
    assert base["codebook"] == base["attention"] == 0 and base["backbone"] == parts["backbone"]
    generic = count_params(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)), by="module")
    assert generic == {"0": 9, "1": 4, "total": 13}
    with pytest.raises(ValueError, match="by"):
        count_params(model, by="layer")


def test_flops_breakdown():
    model = vqsa.create_model("cifar_resnet8", 10, codebook_size=100)
    d = model.num_features
    flops = count_flops(model, (2, 3, 32, 32))
    assert flops["codebook"] == 2 * 2 * 100 * d  # cosine similarities: one (2 x d) @ (d x 100) matmul
    assert flops["head"] == 2 * 2 * (2 * d * d + d * 10)
    assert sum(v for k, v in flops.items() if k != "total") == flops["total"]
    assert model.training  # restored


def test_info_cli(capsys):
    assert main(["info", "cifar_resnet8", "--num-classes", "10", "--codebook-size", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["codebook"] == 6400 and report["input_size"] == [3, 32, 32]
    assert report["macs"]["total"] * 2 == report["flops"]["total"]
    assert main(["info", "cifar_resnet8", "--no-vq"]) == 0
    assert "backbone" in capsys.readouterr().out
    assert main(["info", "cifar_resnet8", "--no-vq", "--codebook-size", "10"]) == 1
    assert "vq=False" in capsys.readouterr().err
