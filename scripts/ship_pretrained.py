"""Ship a clean-pretrained backbone from a finished ``vqsa train`` run: export its weights into the package,
record their sha256 and model card in ``vqsa/weights/manifest.json``, re-measure the shipped file on the full
CIFAR-10 test set, and write the training curves beside the model card.

    python scripts/ship_pretrained.py /work/runs/cifar10_pretrain --name cifar_airnet --data-root $VQSA_DATA
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_accuracy(name: str, data_root: str | None) -> float:
    """Top-1 accuracy (%) of ``create_model(name, pretrained=True)`` on the 10,000 CIFAR-10 test images."""
    import torch

    from vqsa.data.cifar import find_cifar10, load_cifar10
    from vqsa.data.paths import resolve_data_root
    from vqsa.models import create_model

    test = load_cifar10(find_cifar10(resolve_data_root(data_root, required=True)), "test")
    model = create_model(name, num_classes=10, vq=False, pretrained=True).eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test), 500):
            x = torch.from_numpy(test.images[i:i + 500]).permute(0, 3, 1, 2).float().div(255)
            correct += int((model(x).argmax(1).numpy() == test.labels[i:i + 500]).sum())
    return 100.0 * correct / len(test)


def plot_curves(history: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    from vqsa.utils.io import atomic_save_figure

    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss (label smoothing 0.2)")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="x", label="test loss")
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], marker="o", label="train accuracy (augmented)")
    ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], marker="x", label="test accuracy (10,000 images)")
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def model_card(entries: dict) -> str:
    """``docs/results/model_zoo.md``: one section per shipped backbone, from the manifest's recorded figures."""
    lines = ["# Model zoo: weights that ship with vqsa", "",
             "Every file lives in `vqsa/weights/`, is listed with its sha256 in `vqsa/weights/manifest.json`, and is "
             "verified before each load; `vqsa.create_model(name, pretrained=True)` loads it offline and "
             "`vqsa.list_models(source=\"vqsa\", pretrained=True)` lists it. This page is written by "
             "`scripts/ship_pretrained.py` from the run that produced each file; every figure below was measured "
             "by it.", ""]
    for name, e in sorted(entries.items()):
        card, plan = e.card, e.card["compute"]
        size = e.path.stat().st_size
        if e.model_config is not None:
            lines += _whole_model_card(name, e, card, plan, size)
            continue
        lines += [
            f"## `{name}`", "",
            "| | |", "|---|---|",
            f"| trained on | {card['dataset']} |",
            f"| command | `{card['command']}` |",
            f"| epochs | {card['epochs']} |",
            f"| wall time | {card['wall_time_s'] / 60:.1f} min (training, and clean validation after every epoch) |",
            f"| machine | {card['machine']['processor']}, {card['machine']['cpu_count']} CPUs, "
            f"{card['machine'].get('gpu', 'no GPU')}; compute plan: {plan['threads']} threads, "
            f"{plan['precision']}, {plan['workers']} workers |",
            "| versions | " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + " |",
            f"| code | the checkout at `{card['git_sha']}` plus the changes that landed with this file |",
            f"| top-1, 10,000 CIFAR-10 test images | **{card['shipped_test_accuracy']:.2f} %** (the shipped file, "
            f"re-measured; the run's last validation: {card['run_test_accuracy']:.2f} %) |",
            f"| file | `{e.file}`, {size / 2**20:.2f} MB, {e.num_classes} classes, sha256 `{e.sha256}` |", "",
            *[f"{note}\n" for note in card.get("notes", [])],
            f"Training curves ({name}_curves.json holds the numbers):", "",
            f"![training curves](model_zoo/{name}_curves.png)", "",
        ]
    return "\n".join(lines)


def _whole_model_card(name: str, e, card: dict, plan: dict, size: int) -> list[str]:
    """The model-card section of a whole fine-tuned model (``<backbone>.<tag>``)."""
    m, cfg = card["cifar10_c"], e.model_config
    arch = (f"{cfg['name']}, codebook n = {cfg['codebook_size']}, fusion {cfg['fusion']}"
            + (" + self-attention" if cfg.get("attention") else "") if cfg.get("vq") else f"{cfg['name']}, no codebook")
    return [
        f"## `{name}`", "",
        "| | |", "|---|---|",
        f"| architecture | {arch} |",
        f"| trained on | {card['dataset']}; corruptions in training: {card['train_corruptions']} |",
        f"| command | `{card['command']}` |",
        f"| epochs, wall time | {card['epochs']}, {card['wall_time_s'] / 60:.1f} min; compute plan: "
        f"{plan['threads']} threads, {plan['precision']} |",
        "| versions | " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + " |",
        f"| CIFAR-10-C, all {m['images_per_cell']} test images per cell (the shipped file) | clean "
        f"**{m['clean_acc']:.2f} %**, known-corruption error **{m['known_err']:.2f} %** (15 x 5), unknown "
        f"accuracy **{m['unknown_acc']:.2f} %** (4 x 5); protocol: {m['protocol']} |",
        f"| reproduce | `vqsa evaluate --model {name} --dataset cifar10-c --data-root DIR --amp` (DIR holding "
        "`cifar10/` and the `cifar10-c/` that `vqsa corrupt --cifar10 --corruptions all` writes) |",
        f"| file | `{e.file}`, {size / 2**20:.2f} MB ({e.storage}), sha256 `{e.sha256}` |", "",
        *[f"{note}\n" for note in card.get("notes", [])],
        f"Per-corruption results: [model_zoo/{name}/results.md](model_zoo/{name}/results.md)", "",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the finished run folder (model.safetensors, summary.json, metrics)")
    p.add_argument("--name", required=True, help="the registered backbone the weights are for")
    p.add_argument("--data-root", default=None)
    p.add_argument("--command", default="vqsa train -c configs/cifar10_pretrain.yaml --data-root $VQSA_DATA")
    p.add_argument("--note", action="append", default=[], help="a paragraph for the model card (repeatable)")
    args = p.parse_args()

    from vqsa.models.zoo import export_weights
    from vqsa.utils.io import atomic_write_json

    summary = json.loads((args.run / "summary.json").read_text())
    history = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line]
    card = {
        "dataset": "CIFAR-10 (50,000 clean training images)", "command": args.command,
        "epochs": summary["epochs"], "wall_time_s": round(summary["wall_time_s"], 1),
        "run_test_accuracy": round(100 * history[-1]["val_acc"], 2), "compute": summary["compute"],
        "machine": summary["machine"], "versions": summary["versions"], "git_sha": summary["git_sha"],
        "notes": args.note,
    }
    entry = export_weights(args.run, args.name, card)
    card["shipped_test_accuracy"] = round(test_accuracy(args.name, args.data_root), 2)
    entry = export_weights(args.run, args.name, card)  # same bytes, the card now with the re-measured accuracy
    out = REPO / "docs" / "results" / "model_zoo"
    atomic_write_json(out / f"{args.name}_curves.json", history)
    plot_curves(history, out / f"{args.name}_curves.png")
    from vqsa.models.zoo import shipped_weights
    from vqsa.utils.io import atomic_write_text

    atomic_write_text(out.parent / "model_zoo.md", model_card(shipped_weights()))
    print(f"{entry.path} sha256 {entry.sha256}; shipped file: {card['shipped_test_accuracy']:.2f} % on the "
          f"10,000 test images (run: {card['run_test_accuracy']:.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
