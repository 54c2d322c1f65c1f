import subprocess
import sys

import numpy as np
import pytest

import vqsa
from vqsa.cli.main import main
from vqsa.data import load_cifar10, resolve_data_root
from vqsa.utils.io import atomic_write_json, atomic_write_text


def test_version_and_cli_help(capsys):
    assert vqsa.__version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert vqsa.__version__ in capsys.readouterr().out


def test_console_entry_point_runs(child_env):
    out = subprocess.run([sys.executable, "-m", "vqsa", "--help"], capture_output=True, text=True, env=child_env)
    assert out.returncode == 0 and "usage: vqsa" in out.stdout


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")})  # NaN is not JSON: refused, old file kept
    assert path.read_text().strip().startswith("{")
    assert '"a": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    atomic_write_text(path, "x")
    assert path.read_text() == "x"


def test_resolve_data_root_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("VQSA_DATA", raising=False)
    assert resolve_data_root(None) is None
    with pytest.raises(FileNotFoundError, match="--data-root"):
        resolve_data_root(None, required=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_data_root(tmp_path / "nope")


def test_load_cifar10_npz(cifar10_root):
    ds = load_cifar10(cifar10_root, "test")
    assert ds.images.shape == (10000, 32, 32, 3) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.classes[0] == "airplane"
    sub = ds.subset(100, seed=1)
    assert len(sub) == 100 and sub.images.shape[1:] == (32, 32, 3)


def test_load_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar10"):
        load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "val")


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme_cmds = [l for l in (root / "README.md").read_text().splitlines()[:8] if l.startswith("python -m pip")]
    assert len(readme_cmds) == 2, "README must start with the demo command and the test command"
    assert "vqsa demo" in readme_cmds[0]
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert readme_cmds[1] in ci, ".ci/run must run the README's test command verbatim"


def test_atomic_write_respects_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_subpackages_are_reachable_after_a_plain_import(child_env):
    code = ("import sys, vqsa; assert 'vqsa.data' not in sys.modules; "
            "assert callable(vqsa.data.load_cifar10) and callable(vqsa.metrics.mce); "
            "assert vqsa.corruptions.corrupt is vqsa.corrupt and 'layers' in dir(vqsa)")
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env)
