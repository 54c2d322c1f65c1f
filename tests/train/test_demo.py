"""`vqsa demo --quick` end to end, offline, on the digits fallback (no VQSA_DATA, no download)."""
import json

from vqsa.cli.main import main


def test_demo_quick_runs_offline_and_writes_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VQSA_DATA", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-download", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "scikit-learn's bundled digits" in captured.err
    assert "| fine-tune (no codebook) |" in captured.out and "| VQSA (concat + SA) |" in captured.out
    for f in ("report.md", "corruption_accuracy.png", "training_curves.png", "baseline/results.json",
              "vqsa/results.json", "vqsa/model.safetensors"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    assert "digits" in report and "![per-corruption accuracy](corruption_accuracy.png)" in report
    res = json.loads((out / "vqsa" / "results.json").read_text())
    assert len(res["train_corruptions"]) == 15
    # a second demo into the same folder refuses instead of overwriting
    assert main(["demo", "--quick", "--no-download", "--out", str(out)]) == 1
    assert "previous demo run" in capsys.readouterr().err
