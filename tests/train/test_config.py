"""Config files, --key value overrides, unknown keys, and every shipped config under configs/."""
import warnings
from pathlib import Path

import pytest

from vqsa.cli.main import main
from vqsa.train.config import (
    CODEBOOK_KWARGS,
    ConfigWarning,
    TrainConfig,
    load_config,
    parse_overrides,
    to_yaml,
    valid_keys,
)

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


def test_zero_still_means_the_default_for_num_classes_and_img_size(tmp_path):
    """Configs (and checkpoints) written with 0 for these keys keep loading."""
    cfg = load_config(None, {"model.num_classes": 0, "data.img_size": 0, "model.pretrained": None})
    assert cfg.model.num_classes == 0 and cfg.data.img_size == 0 and cfg.model.pretrained is False  # null: false


@pytest.mark.parametrize(
    "text, err, match",
    [
        ("epochz: 3\n", ValueError, "unknown config key 'epochz'; did you mean 'epochs'\\?$"),
        ("model: {codebok_size: 3}\n", ValueError,
         "bad.yaml: unknown config key 'model.codebok_size'; did you mean 'model.codebook_size'\\?$"),
        ("optim: {learning_rate: 3}\n", ValueError, "'optim.learning_rate'; valid keys in 'optim': optim.name, optim.lr,"),
        ("model: {lr: 3}\n", ValueError, "'model.lr'; did you mean 'optim.lr'\\?$"),
        ("zzz: 3\n", ValueError, "'zzz'; valid top-level keys: name, .*; sections: model, data, corruption, optim, eval"),
        ("epochs: three\n", TypeError, "'epochs' expects an integer"),
        ("epochs: 0\n", ValueError, "'epochs' must be > 0"),
        ("eval: {n_examples: 0}\n", ValueError, "'eval.n_examples' must be > 0 or null; got 0"),  # before training
        ("model: {num_classes: -1}\n", ValueError, "'model.num_classes' must be >= 0 or null"),
        ("model: {pretrained: 'false'}\n", ValueError, "'model.pretrained' must be true, false or the path"),
        ("model: {pretrained: ''}\n", ValueError, "'model.pretrained' must be true, false or the path"),
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
    err = capsys.readouterr().err
    assert "unknown config key 'optim.learning_rate'; valid keys in 'optim': optim.name, optim.lr" in err
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


def test_scientific_notation_is_a_number_for_float_keys(tmp_path, capsys):
    """PyYAML (YAML 1.1) reads 1e-4 as a string; float keys take it as a number, ints stay ints."""
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\noptim: {lr: 3e-4, weight_decay: 5E-4, min_lr: 1.0e-6, clip_grad: 1e+1}\n"
                    "model: {kwargs: {decay: 9e-1}}\n")
    cfg = load_config(path)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.min_lr, cfg.optim.clip_grad) == (3e-4, 5e-4, 1e-6, 10.0)
    assert cfg.epochs == 2 and isinstance(cfg.epochs, int) and cfg.model.kwargs == {"decay": 0.9}
    assert load_config(tmp_path / "c.yaml", ["--optim.lr", "2.5e-3"]).optim.lr == 2.5e-3
    assert load_config(None, {"optim.lr": "1e-4", "optim.warmup_epochs": 1}).optim.lr == 1e-4  # a Python caller
    with pytest.raises(TypeError, match="'epochs' expects an integer"):
        load_config(None, ["--epochs", "1e3"])
    with pytest.raises(TypeError, match="'optim.lr' expects a number"):
        load_config(None, {"optim.lr": "fast"})
    cfg = load_config(None, ["--amp", "false", "--model.num_classes", "null", "--seed", "7"])
    assert cfg.amp is False and cfg.model.num_classes is None and cfg.seed == 7
    assert load_config(None, ["--corruption.severities", "1,3"]).corruption.severities == [1, 3]

    assert main(["train", "-c", str(path), "--lr", "1e-4", "--optim.weight_decay=5e-4", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0001" in out and "weight_decay: 0.0005" in out
    assert load_config(None, base=__import__("yaml").safe_load(out)).optim.lr == 1e-4  # round trip


def test_misspelt_option_gets_did_you_mean_from_the_train_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "1", "--model.codebok_size", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vqsa train ") and "COMMAND" not in err
    assert "vqsa train: error: unknown config key 'model.codebok_size'; did you mean 'model.codebook_size'?" in err
    with pytest.raises(SystemExit):
        main(["train", "--codebook-size=3"])
    assert "did you mean 'model.codebook_size'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "configs/x.yaml"])
    assert "-c configs/x.yaml" in capsys.readouterr().err


def test_bare_train_prints_usage_and_a_hint_instead_of_a_default_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vqsa train ") and "-c CONFIG.yaml" in err and "--data.dataset" in err
    assert not (tmp_path / "runs").exists()
    assert main(["train", "--print-config"]) == 0  # any explicit option still counts
    assert "name: run" in capsys.readouterr().out


def test_help_lists_every_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.count("default: ") == len(valid_keys())
    lines = out.splitlines()

    def help_of(flag: str) -> str:  # the flag's line and the next (argparse wraps long flag lists)
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(flag + " "))
        return " ".join(lines[i:i + 2])

    assert "default: 10" in help_of("--epochs") and "default: 0.001" in help_of("--optim.lr")
    assert "default: cosine; one of cosine, linear, constant" in help_of("--optim.scheduler")
    assert "default: [1, 2, 3, 4, 5]" in help_of("--corruption.severities") and "--lr" in help_of("--optim.lr")
    assert "default: null" in help_of("--data.root") and "--data-root" in help_of("--data.root")

def test_vq_false_ignores_the_codebook_options_with_one_warning():
    """--model.vq false on a VQSA config builds the baseline: codebook options are dropped, named in one warning."""
    from vqsa.models._factory import _VQ_OPTIONS
    from vqsa.train.setup import build_model

    assert set(CODEBOOK_KWARGS) == {"codebook_preset", *_VQ_OPTIONS}
    path = Path(__file__).parents[2] / "configs" / "cifar10_r18_concat_sa_healthy.yaml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(path, ["--model.vq", "false", "--model.distance", "l2"])
    ours = [w for w in caught if issubclass(w.category, ConfigWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    msg = str(ours[0].message)
    for name in ("model.codebook_size=1000", "model.fusion=concat", "model.attention=true", "model.distance=l2",
                 "model.kwargs.codebook_preset=healthy"):
        assert name in msg, msg
    m = cfg.model
    assert (m.vq, m.codebook_size, m.fusion, m.attention, m.distance) == (False, None, None, None, None)
    assert m.kwargs == {"cifar_stem": True}
    assert build_model(cfg, 10).vq is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(Path(__file__).parents[2] / "configs" / "cifar10_r18_finetune.yaml")  # nothing to ignore
        assert load_config(None, base=cfg.to_dict()) == cfg  # the resolved config (config.yaml) stays quiet
