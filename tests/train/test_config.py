"""Config files, --key value overrides, unknown keys, and every shipped config under configs/."""
from pathlib import Path

import pytest

from vqsa.cli.main import main
from vqsa.train.config import TrainConfig, load_config, parse_overrides, to_yaml, valid_keys

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_defaults_overrides_and_yaml_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nmodel:\n  name: cifar_resnet8\n  codebook_size: 500\noptim: {lr: 0.01}\n")
    cfg = load_config(path, ["--epochs", "3", "--model.codebook_size", "1000", "--amp", "--lr=0.5",
                             "--corruption.corruptions", "[gaussian_noise, contrast]", "--data-root", "/d"])
    assert (cfg.epochs, cfg.model.codebook_size, cfg.model.name, cfg.amp) == (3, 1000, "cifar_resnet8", True)
    assert cfg.optim.lr == 0.5 and cfg.data.root == "/d"
    assert cfg.corruption.corruptions == ["gaussian_noise", "contrast"]
    (tmp_path / "r.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "r.yaml") == cfg
    assert load_config(None, {"model.kwargs": {"drop_rate": 0.1}}).model.kwargs == {"drop_rate": 0.1}
    assert parse_overrides(["--amp", "--epochs", "2"]) == {"amp": True, "epochs": 2}
    assert load_config(None, ["--corruption.severities", "1,2"]).corruption.severities == [1, 2]


@pytest.mark.parametrize(
    "text, err, match",
    [
        ("epochz: 3\n", ValueError, "unknown config key 'epochz'.*valid keys: name, output_dir"),
        ("model: {codebok_size: 3}\n", ValueError, "unknown config key 'model.codebok_size'"),
        ("epochs: three\n", TypeError, "'epochs' expects an integer"),
        ("epochs: 0\n", ValueError, "'epochs' must be > 0"),
        ("model: {fusion: multiply}\n", ValueError, "'model.fusion' must be one of null, replace, add, concat"),
        ("corruption: {severities: [0, 6]}\n", ValueError, "severities in 1..5"),
        ("corruption: {clean_fraction: 2}\n", ValueError, "clean_fraction"),
        ("- a\n- b\n", ValueError, "YAML mapping"),
        ("model: 3\n", TypeError, "section 'model'"),
    ],
)
def test_bad_configs_are_rejected_with_a_message(tmp_path, text, err, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(err, match=match):
        load_config(path)


def test_cli_rejects_unknown_keys_and_prints_resolved_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {learning_rate: 0.1}\n")
    assert main(["train", "-c", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'optim.learning_rate'" in err and "optim.lr" in err
    with pytest.raises(SystemExit):
        main(["train", "--optim.learning_rate", "0.1"])
    assert "unrecognized arguments: --optim.learning_rate" in capsys.readouterr().err
    assert main(["train", "--print-config", "--epochs", "4", "--model.fusion", "add", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 4" in out and "fusion: add" in out and "skip_bad: true" in out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    assert len(valid_keys()) == len(set(valid_keys()))


def test_every_shipped_config_is_valid():
    assert len(CONFIGS) >= 8, "configs/ should hold the paper (ImageNet) and Table 1 (CIFAR-10) settings"
    for path in CONFIGS:
        cfg = load_config(path)
        assert isinstance(cfg, TrainConfig) and cfg.name == path.stem, path


def test_small_configs_build_their_model():
    import vqsa

    small = [p for p in CONFIGS if p.name.startswith("cifar10_")]
    rows = ("finetune", "replace", "add", "concat", "concat_sa")  # the five rows of Table 1
    assert {f"cifar10_r18_{r}.yaml" for r in rows} <= {p.name for p in small}
    params = {}
    for path in small:
        cfg = load_config(path)
        m = cfg.model
        model = vqsa.create_model(m.name, num_classes=10, pretrained=False, codebook_size=m.codebook_size,
                                  fusion=m.fusion, attention=m.attention, vq=m.vq, distance=m.distance,
                                  commitment_weight=m.commitment_weight, **m.kwargs)
        params[path.stem] = sum(p.numel() for p in model.parameters())
        assert (model.vq is None) == (not m.vq), path
    assert params["cifar10_r18_finetune"] < params["cifar10_r18_concat"] < params["cifar10_r18_concat_sa"]
