"""The Table 1 script's plumbing (argument checks, overrides, aggregation, resume guard); no training here."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_table1.py"


@pytest.fixture(scope="module")
def t1():
    spec = importlib.util.spec_from_file_location("reproduce_table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argument_checks(t1):
    args = t1.parse_args(["--rows", "finetune, concat_sa", "--seeds", "0", "1", "--epochs", "2"])
    assert args.rows == ["finetune", "concat_sa"] and args.seeds == [0, 1]
    assert t1.default_tag(args) == "resnet18_e2_s2"
    for bad in (["--rows", "concat,sa"], ["--severities", "6"], ["--seeds", "1", "1"], ["--epochs", "0"]):
        with pytest.raises(SystemExit):
            t1.parse_args(bad)


def test_overrides_and_configs(t1, tmp_path):
    from vqsa.train.config import load_config

    args = t1.parse_args(["--backbone", "cifar_resnet8", "--test-subset", "64", "--set", "model.codebook_size", "64"])
    ov = t1.overrides(args, "concat_sa", 2, tmp_path)
    assert ov["model.kwargs"] == {}  # vqsa's CIFAR ResNets have their own stem
    cfg = load_config(t1.ROOT / "configs" / t1.ROWS["concat_sa"][0], ov)
    assert (cfg.model.name, cfg.model.codebook_size, cfg.data.val_subset, cfg.seed) == ("cifar_resnet8", 64, 64, 2)
    assert cfg.run_dir() == tmp_path / "concat_sa_seed2"
    r18 = load_config(t1.ROOT / "configs" / "cifar10_r18_finetune.yaml", t1.overrides(t1.parse_args([]), "finetune",
                                                                                        0, tmp_path))
    assert r18.model.kwargs == {"cifar_stem": True} and r18.epochs == 15 and not r18.model.vq


def test_resume_guard(t1, tmp_path):
    from vqsa.train.config import load_config, to_yaml

    path = t1.ROOT / "configs" / "cifar10_r18_add.yaml"
    cfg = load_config(path, t1.overrides(t1.parse_args(["--epochs", "1"]), "add", 0, tmp_path))
    cfg.run_dir().mkdir(parents=True)
    (cfg.run_dir() / "config.yaml").write_text(to_yaml(cfg))
    t1.check_same_settings(cfg.run_dir(), cfg)  # same settings: fine
    t1.check_same_settings(cfg.run_dir(), load_config(path, {**t1.overrides(t1.parse_args(["--epochs", "1"]), "add",
                                                                             0, tmp_path), "data.workers": 0}))
    other = load_config(path, t1.overrides(t1.parse_args(["--epochs", "2"]), "add", 0, tmp_path))
    with pytest.raises(ValueError, match="epochs differ"):
        t1.check_same_settings(cfg.run_dir(), other)


def test_aggregate_and_markdown(t1):
    def run(row, seed, clean, agreement=None):
        r = {"row": row, "seed": seed, "clean_acc": clean, "known_err": 100 - clean, "params_m": 11.2,
             "per_corruption_err": {"fog": 100 - clean, "saturate": 50.0}}
        return r if agreement is None else {**r, "agreement": agreement, "agreement_chance": 90.0}

    runs = [run("finetune", 0, 80.0), run("finetune", 1, 82.0), run("concat_sa", 0, 81.0, 95.0)]
    table = t1.aggregate(runs, ["finetune", "concat_sa", "add"])
    assert list(table) == ["finetune", "concat_sa"]  # rows without runs are left out
    ft, sa = table["finetune"], table["concat_sa"]
    assert ft["clean_acc"] == {"mean": 81.0, "std": pytest.approx(2 ** 0.5), "n": 2}  # sample std
    assert ft["agreement"] == {"mean": None, "std": None, "n": 0}
    assert sa["clean_acc"]["std"] is None and sa["agreement"]["mean"] == 95.0
    assert ft["per_corruption_err"]["fog"]["mean"] == 19.0
    meta = {"tag": "t", "command": "python x", "hardware": "cpu", "wall_time_s": 60.0, "started": "s",
            "finished": "f", "scale": "REDUCED", "agreement_severity": 3}
    md = t1.markdown(table, meta)
    assert "| fine-tune (no codebook) | 2 | 81.00 +- 1.41 | 19.00 +- 1.41 |" in md
    assert "| codebook, concat + SA | 1 | 81.00 | 19.00 | - | - | 95.0 | 90.0 | - |" in md
    assert "| fog | 19.0 +- 1.4 | 19.0 |" in md
