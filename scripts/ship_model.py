"""Ship a whole fine-tuned model from a finished ``vqsa train`` run as ``<backbone>.<tag>``: export it into the
package (float16, sha256 in ``vqsa/weights/manifest.json``), evaluate the shipped file on the full stored
CIFAR-10-C set (clean + 19 corruptions x 5 severities, 10,000 test images each), record the figures in its card,
and rewrite ``docs/results/model_zoo.md``.

    python scripts/ship_model.py /work/runs/t1/finetune_seed0 --name cifar_airnet.ft_c10c \\
        --cifar10-c /data/cifar10-c --data-root $VQSA_DATA --command "python benchmarks/table1_pretrained.py ..."

``vqsa evaluate --model <name> --dataset cifar10-c`` then reproduces the card's numbers.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_shipped(name: str, train_corruptions, data_root: str | None, cifar10_c: str, out: Path):
    """The shipped file of ``name`` on every cell of the stored CIFAR-10-C set, saved into ``out``."""
    import vqsa
    from vqsa.eval.progress import clear_progress

    study = _load("table1_pretrained", REPO / "benchmarks" / "table1_pretrained.py")
    model = vqsa.create_model(name, pretrained=True)
    with study.eval_root(data_root, cifar10_c) as root, tempfile.TemporaryDirectory() as progress:
        res = vqsa.evaluate(model, "cifar10-c", data_root=root, corruptions="all", batch_size=500, num_workers=0,
                            amp=True, train_corruptions=train_corruptions, checkpoint_dir=progress,
                            model_info={"name": name, "label": name, **model.model_config})
        clear_progress(progress)
    res.save(out)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the finished run folder (model.safetensors, summary.json, config.yaml)")
    p.add_argument("--name", required=True, help="<backbone>.<tag>, e.g. cifar_airnet.vqsa_c10c")
    p.add_argument("--cifar10-c", required=True, help="the CIFAR-10-C folder written by vqsa corrupt --cifar10")
    p.add_argument("--data-root", default=None, help="folder with cifar10/ (default $VQSA_DATA)")
    p.add_argument("--command", required=True, help="the command that trained the run, for the card")
    p.add_argument("--note", action="append", default=[], help="a paragraph for the model card (repeatable)")
    args = p.parse_args()

    import yaml

    from vqsa.models.zoo import export_model, shipped_weights
    from vqsa.utils.io import atomic_write_text

    summary = json.loads((args.run / "summary.json").read_text())
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    card = {
        "dataset": f"CIFAR-10, {config['data'].get('train_subset') or 50000:,} training images"
                   + (" mixed clean and corrupted" if config["corruption"]["corruptions"] else ""),
        "command": args.command,
        "train_corruptions": config["corruption"]["corruptions"], "epochs": summary["epochs"],
        "wall_time_s": round(summary["wall_time_s"], 1), "compute": summary["compute"],
        "machine": summary["machine"], "versions": summary["versions"], "git_sha": summary["git_sha"],
        "notes": args.note,
    }
    entry = export_model(args.run, args.name, card)
    out = REPO / "docs" / "results" / "model_zoo" / args.name
    t = time.perf_counter()
    res = evaluate_shipped(args.name, card["train_corruptions"], args.data_root, args.cifar10_c, out)
    card["cifar10_c"] = {"clean_acc": res.clean_accuracy, "known_err": res.mean_error,
                         "unknown_acc": res.unknown_accuracy, "protocol": res.protocol,
                         "images_per_cell": res.clean.total, "eval_s": round(time.perf_counter() - t, 1)}
    entry = export_model(args.run, args.name, card)  # the same bytes; the card now holds the measured figures
    sys.path.insert(0, str(REPO / "scripts"))
    from ship_pretrained import model_card

    atomic_write_text(REPO / "docs" / "results" / "model_zoo.md", model_card(shipped_weights()))
    print(f"{entry.path} sha256 {entry.sha256}: clean {res.clean_accuracy:.2f} %, known error "
          f"{res.mean_error:.2f} %, unknown {res.unknown_accuracy:.2f} % on {res.clean.total} test images per cell")
    return 0


if __name__ == "__main__":
    sys.exit(main())
