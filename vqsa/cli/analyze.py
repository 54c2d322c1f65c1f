"""``vqsa analyze``: t-SNE (Figs. 5-6), Grad-CAM (Fig. 1) and codebook usage of a checkpoint, optionally next to a
second one. Every figure has a JSON companion with the numbers behind it; see docs/analysis.md.

    vqsa analyze runs/c10_vqsa --data-root $VQSA_DATA --what tsne,gradcam,codebook
    vqsa analyze runs/c10_vqsa --compare runs/c10_finetune --data-root $VQSA_DATA --corruptions defocus_blur fog
    vqsa analyze model.safetensors --dataset imagefolder --data-root /data/imagenet --split val --what gradcam
"""
from __future__ import annotations

import argparse
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vqsa.cli._args import positive_int
from vqsa.corruptions._params import PROFILE_CHOICES

logger = logging.getLogger(__name__)

ANALYSES = ("tsne", "gradcam", "codebook")
#: One corruption of each family, defocus blur first (Fig. 1's corruption, used by Grad-CAM).
DEFAULT_CORRUPTIONS = ("defocus_blur", "gaussian_noise", "snow", "contrast", "jpeg_compression")


def _what(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in ANALYSES]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"--what takes a comma-separated subset of {','.join(ANALYSES)}, got {text!r}")
    return list(dict.fromkeys(items))


def add_parser(subparsers: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help_, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", help="run folder, model.safetensors or training checkpoint .pt")
    p.add_argument("--compare", default=None, metavar="OTHER", help="a second checkpoint shown side by side")
    p.add_argument("--what", type=_what, default=list(ANALYSES), help="comma-separated: tsne,gradcam,codebook (all)")
    p.add_argument("--out", default=None, help="output folder (default <run>/analysis, or analysis/<name>)")
    d = p.add_argument_group("data")
    d.add_argument("--data-root", default=None, help="data folder (default $VQSA_DATA)")
    d.add_argument("--dataset", choices=("cifar10", "imagefolder"), default="cifar10")
    d.add_argument("--split", default=None,
                   help="cifar10: train or test (default test); imagefolder: sub-folder of the root (default val "
                        "when present, else the root itself)")
    d.add_argument("--img-size", type=positive_int, default=None,
                   help="imagefolder: side after resize + centre crop (default: the model's input size)")
    d.add_argument("--corruptions", nargs="+", default=list(DEFAULT_CORRUPTIONS),
                   help="names or groups (common, validation, all, noise, blur, weather, digital); Grad-CAM uses "
                        f"the first (default: {' '.join(DEFAULT_CORRUPTIONS)})")
    d.add_argument("--severity", type=int, choices=range(1, 6), default=3, metavar="{1..5}", help="default 3")
    d.add_argument("--classes", nargs="+", default=None,
                   help="class names or indices for t-SNE (default: the first five); the first is the "
                        "corruption-wise class")
    d.add_argument("--per-class", type=positive_int, default=20, help="t-SNE images per class (default 20)")
    d.add_argument("--cam-images", type=positive_int, default=6, help="Grad-CAM rows, one class each (default 6)")
    d.add_argument("--cam-target", choices=("label", "prediction"), default="label",
                   help="class explained by Grad-CAM (default: the true label)")
    d.add_argument("--limit", type=positive_int, default=1000, help="images for the codebook statistics (default 1000)")
    d.add_argument("--seed", type=int, default=0, help="image choice, corruption draws and t-SNE (default 0)")
    d.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="corruption parameter table")
    r = p.add_argument_group("run")
    r.add_argument("--tsne-iters", type=_tsne_iters, default=1000, help="t-SNE iterations, >= 250 (default 1000)")
    r.add_argument("--batch-size", type=positive_int, default=128)
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


@dataclass
class _Data:
    """Images (uint8 NHWC) and labels the analyses pick from, with class names and a description."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    description: str


def _needed(labels: np.ndarray, args: argparse.Namespace, classes: list[int]) -> dict[str, np.ndarray]:
    """Indices each requested analysis uses, chosen from the labels alone (no image is decoded)."""
    from vqsa.analysis.features import seeded_subset, select_per_class

    picks: dict[str, np.ndarray] = {}
    if "tsne" in args.what:
        picks["tsne"] = select_per_class(labels, classes, args.per_class, args.seed)
    if "gradcam" in args.what:
        cam_classes = [int(c) for c in np.unique(labels)][: args.cam_images]
        per = -(-args.cam_images // len(cam_classes))
        picks["gradcam"] = select_per_class(labels, cam_classes, per, args.seed)[: args.cam_images]
    if "codebook" in args.what:
        picks["codebook"] = seeded_subset(len(labels), args.limit, args.seed)
    return picks


def _tsne_iters(text: str) -> int:
    """scikit-learn's t-SNE needs at least 250 iterations: refuse fewer before any feature is extracted."""
    n = positive_int(text)
    if n < 250:
        raise argparse.ArgumentTypeError(f"t-SNE needs at least 250 iterations, got {n}")
    return n


def _class_ids(spec: list[str] | None, names: tuple[str, ...], labels: np.ndarray) -> list[int]:
    present = [int(c) for c in np.unique(labels)]
    if spec is None:
        return present[:5]
    out = []
    for item in spec:
        if item in names:
            out.append(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            out.append(int(item))
        elif item.isdigit():
            raise ValueError(f"class index {item} is out of range: the dataset has {len(names)} classes "
                             f"(0..{len(names) - 1})")
        else:
            more = " ..." if len(names) > 20 else ""
            raise ValueError(f"unknown class {item!r}; classes: {', '.join(names[:20])}{more}")
    return out


def _load_cifar(args: argparse.Namespace, root: Path) -> _Data:
    from vqsa.data.cifar import load_cifar10

    ds = load_cifar10(root, args.split or "test")
    return _Data(ds.images, ds.labels, ds.classes, f"{ds.source} ({len(ds)} images)")


def _load_folder(args: argparse.Namespace, root: Path, size: int, classes_spec: list[str] | None) -> _Data:
    """Decode only the images the analyses need (resize to size/0.875 then centre crop, as evaluation does)."""
    from PIL import Image

    from vqsa.data.folder import ImageFolderSource

    folder = root / args.split if args.split else (root / "val" if (root / "val").is_dir() else root)
    src = ImageFolderSource(folder)
    picks = _needed(src.labels, args, _class_ids(classes_spec, src.classes, src.labels))
    keep = np.unique(np.concatenate(list(picks.values())).astype(np.int64))
    images = np.empty((len(keep), size, size, 3), dtype=np.uint8)
    short = round(size / 0.875)
    for i, k in enumerate(keep):
        img = Image.fromarray(src.load(int(k))[0])
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        images[i] = np.asarray(img.crop((left, top, left + size, top + size)))
    return _Data(images, src.labels[keep], src.classes, f"{folder} ({len(keep)} of {len(src)} images, "
                 f"Resize({short})+CenterCrop({size}))")


def _imagenet_labels(data: _Data, num_classes: int) -> _Data:
    """Folder labels -> ImageNet-1k indices when every class folder is a wnid and the model has 1000 classes."""
    from vqsa.data.imagenet_subsets import wnid_to_index

    index = wnid_to_index()
    if num_classes != 1000 or not all(c in index for c in data.classes):
        return data
    mapping = np.array([index[c] for c in data.classes])
    names = ["?"] * 1000
    for c in data.classes:
        names[index[c]] = c
    return _Data(data.images, mapping[data.labels], tuple(names), data.description + ", ImageNet-1k labels")


def _load_models(args: argparse.Namespace, device: Any) -> dict[str, tuple[Any, Path]]:
    """label -> (model in eval mode on ``device``, its checkpoint path)."""
    from vqsa.eval.model import load_for_eval

    models: dict[str, tuple[Any, Path]] = {}
    for path in [args.checkpoint] + ([args.compare] if args.compare else []):
        model, info, _ = load_for_eval(path)
        label = str(info["label"])
        while label in models:
            label += "_2"
        models[label] = (model.to(device).eval(), Path(path))
    sizes = {m.num_classes for m, _ in models.values()}
    if len(sizes) > 1:
        raise ValueError(f"the checkpoints have different numbers of classes ({sorted(sizes)}): not comparable")
    return models


def _default_out(args: argparse.Namespace, first: str) -> Path:
    if args.out:
        return Path(args.out)
    path = Path(args.checkpoint)
    return path / "analysis" if path.is_dir() else Path("analysis") / first


def run(args: argparse.Namespace) -> int:
    import torch

    from vqsa.analysis.codebook import analyze_codebook
    from vqsa.analysis.gradcam import analyze_gradcam
    from vqsa.analysis.tsne import analyze_tsne
    from vqsa.data.paths import resolve_data_root
    from vqsa.eval.datasets import resolve_corruptions
    from vqsa.utils.io import atomic_write_json
    from vqsa.utils.meta import git_sha, machine, versions

    corruptions = resolve_corruptions(args.corruptions)
    if not corruptions:
        raise ValueError("--corruptions selected no corruption")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = _load_models(args, device)
    first = next(iter(models.values()))[0]
    root = resolve_data_root(args.data_root, required=True)
    if args.dataset == "cifar10":
        data = _load_cifar(args, root)
    else:
        size = args.img_size or int(first.pretrained_cfg["input_size"][-1])
        data = _load_folder(args, root, size, args.classes)
    data = _imagenet_labels(data, first.num_classes)
    if "gradcam" in args.what and args.cam_target == "label" and data.labels.max() >= first.num_classes:
        raise ValueError(f"labels of {data.description} exceed the model's {first.num_classes} classes: use "
                         "--cam-target prediction")
    classes = _class_ids(args.classes, data.classes, data.labels)
    picks = _needed(data.labels, args, classes)
    out = _default_out(args, next(iter(models)))
    common = {"severity": args.severity, "seed": args.seed, "profile": args.profile}
    report: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "checkpoints": {k: {"path": str(p), "model_config": m.model_config} for k, (m, p) in models.items()},
        "data": data.description, "corruptions": corruptions,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(), "git_sha": git_sha(), "machine": machine(), "device": str(device),
    }
    written: list[Path] = []
    for label, (model, path) in models.items():
        sub = out / label if len(models) > 1 else out
        if "tsne" in args.what:
            logger.info(f"t-SNE of {label} ...")
            res = analyze_tsne(model, data.images, data.labels, corruptions=corruptions, classes=classes,
                               per_class=args.per_class, class_names=data.classes, out_dir=sub,
                               max_iter=args.tsne_iters, batch_size=args.batch_size, label=label, **common)
            report.setdefault("tsne", {})[label] = {k: res[k] for k in ("corruption_wise", "class_wise")}
            written += [sub / "tsne_corruption.png", sub / "tsne_class.png", sub / "tsne.json"]
        if "codebook" in args.what and getattr(model, "vq", None) is None:
            logger.info(f"codebook: {label} has no codebook (vq=False), skipped")
            report.setdefault("codebook", {})[label] = None
        elif "codebook" in args.what:
            logger.info(f"codebook usage of {label} ...")
            res = analyze_codebook(model, data.images, corruptions=corruptions, indices=picks["codebook"],
                                   run_dir=path, out_dir=sub, batch_size=args.batch_size, label=label, **common)
            report.setdefault("codebook", {})[label] = {k: res[k] for k in ("usage", "agreement")}
            written += [sub / "codebook.json", sub / "codebook_usage.png", sub / "codebook_agreement.png",
                        sub / "codebook_training.png"]
    if "codebook" in args.what and not any(report["codebook"].values()):
        raise ValueError("--what codebook: none of the checkpoints has a codebook")
    if "gradcam" in args.what:
        logger.info("Grad-CAM ...")
        res = analyze_gradcam({k: m for k, (m, _) in models.items()}, data.images, data.labels,
                              corruption=corruptions[0], indices=picks["gradcam"], target=args.cam_target,
                              class_names=data.classes, out_dir=out, **common)
        report["gradcam"] = {k: {"mean_map_correlation": v["mean_map_correlation"],
                                 "correct_clean": v["correct_clean"], "correct_corrupted": v["correct_corrupted"]}
                             for k, v in res["models"].items()}
        written += [out / "gradcam.png", out / "gradcam.json"]
    atomic_write_json(out / "analysis.json", report)
    written.append(out / "analysis.json")
    print("wrote " + ", ".join(str(p) for p in written if p.is_file()))
    return 0
